"""The one filter for everything this project sends to MLflow: params, tags, dataset sources, artifacts.

What it does, and why:

* **Secrets.** A key that names a credential (``password``, ``secret_access_key``, ``hf_token``, ...) or a
  value shaped like one (AWS key id, ``hf_...``, ``sk-...``, ``ghp_...``) never leaves the machine. A param
  or tag carrying one is dropped, with a warning naming the key (never the value) (``metadata.clean``);
  inside an artifact the value becomes ``<redacted>`` and the key stays, so a JSON file keeps its shape.
  A password inside a URL (``http://user:pw@host``) becomes ``***``.
* **Paths.** An absolute path under the project root is written relative to it (``models/sft/model``):
  the run stays readable and comparable across machines and checkouts. Any other absolute path (a home
  directory, ``/tmp``, a cache) becomes ``<external>/`` + its last component: the file's name stays, the
  machine's layout and the user's name do not. Relative paths are kept as written.

The project root is the one the open stage or pipeline run was given (``project_root``; the working
directory outside a run). Artifacts are filtered on a copy: JSON and JSON Lines are parsed and walked (keys
and values), other text files are filtered line by line, HTML only has the project root stripped (its
links look like absolute paths), and binary files (images, weights) go as they are.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

REDACTED = "<redacted>"
EXTERNAL = "<external>"

# Keys: credential names, but not "tokenizer", "max_new_tokens" or "pad_token".
SECRET_KEY = re.compile(
    r"secret|passw(or)?d|api[_-]?key|access[_-]?key|private[_-]?key|credential"
    r"|(^|\.)token$|(auth|bearer|hf|hub|access|refresh|session|github|api)[_-]?token$",
    re.IGNORECASE,
)
# Values: well-known token shapes (AWS key ids, Hugging Face, OpenAI-style, GitHub).
SECRET_VALUE = re.compile(
    r"\bAKIA[0-9A-Z]{16}\b|\bhf_[A-Za-z0-9]{20,}|\bsk-[A-Za-z0-9_-]{20,}|\bgh[pousr]_[A-Za-z0-9]{20,}"
)
_URL_PASSWORD = re.compile(r"(://[^/\s:@]+):[^/\s@]+@")
# "key: value" / "key=value" lines of free text (.env, YAML, logs): the value goes when the key is secret.
_KEY_VALUE_LINE = re.compile(r"^(\s*[\"']?)([\w.\-]+)([\"']?\s*[:=]\s*)(\S.*)$", re.MULTILINE)
# An absolute path (or ~/...) standing on its own: at the start, after a space, quote, bracket, "=" or
# ",", or right after file:// / sqlite:///. Not "km/h", "1/2" or the "//host/path" of a URL.
_ABS_PATH = re.compile(
    r"(?:(?<=file://)|(?<=sqlite:///)|(?<![\w./:~>\-]))(~?/[^\s'\"`<>|,;()\[\]{}]+)"
)
_TEXT_SUFFIXES = {
    ".json", ".jsonl", ".md", ".txt", ".yaml", ".yml", ".csv", ".log", ".py", ".cfg", ".ini", ".toml", ".env",
    ".html", "",
}

_ROOT: ContextVar[Path | None] = ContextVar("mllm4d_project_root", default=None)


def project_root() -> Path:
    """The project root of the open stage or pipeline run (``use_root``), else the working directory."""
    return _ROOT.get() or Path.cwd()


@contextlib.contextmanager
def use_root(root: Path) -> Iterator[None]:
    """Make ``root`` the project root that the filter relativises paths against, inside the block."""
    token = _ROOT.set(Path(root))
    try:
        yield
    finally:
        _ROOT.reset(token)


def is_secret(key: str, value: str) -> bool:
    return bool(SECRET_KEY.search(key) or SECRET_VALUE.search(value))


def _roots(root: Path) -> list[str]:
    """The root as given and as resolved (a symlinked /tmp, a relative root), longest first."""
    forms = {os.path.normpath(os.path.abspath(root)), os.path.normpath(os.path.realpath(root))}
    return sorted(forms, key=len, reverse=True)


def relative_path(path: str, root: Path | None = None) -> str:
    """An absolute path as it is logged: relative to the project root, else ``<external>/<name>``."""
    if path.startswith("~"):
        path = os.path.expanduser(path)
    norm = os.path.normpath(path)
    for base in _roots(root or project_root()):
        if norm == base:
            return "."
        if norm.startswith(base.rstrip("/") + "/"):
            return norm[len(base.rstrip("/")) + 1 :]
    name = os.path.basename(norm.rstrip("/"))
    return f"{EXTERNAL}/{name}" if name else EXTERNAL


def mask_url_passwords(text: str) -> str:
    return _URL_PASSWORD.sub(r"\1:***@", text)


def redact_text(text: str, root: Path | None = None) -> str:
    """Passwords in URLs masked, secret-shaped values replaced, absolute paths made relative or external."""
    root = root or project_root()
    text = mask_url_passwords(text)
    text = SECRET_VALUE.sub(REDACTED, text)
    text = _KEY_VALUE_LINE.sub(
        lambda m: m.group(1) + m.group(2) + m.group(3) + REDACTED if SECRET_KEY.search(m.group(2)) else m.group(0),
        text,
    )
    return _ABS_PATH.sub(lambda m: relative_path(m.group(1), root), text)


def redact_value(value: Any, root: Path | None = None, key: str = "") -> Any:
    """A JSON value with every string filtered; a secret-named key's value becomes ``<redacted>``."""
    root = root or project_root()
    if key and SECRET_KEY.search(key) and value is not None:
        return REDACTED
    if isinstance(value, str):
        return redact_text(value, root)
    if isinstance(value, dict):
        return {redact_text(str(k), root): redact_value(v, root, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v, root) for v in value]
    return value


def _redact_json(text: str, root: Path) -> str | None:
    """Filtered JSON text keeping the file's indentation style; None when it is not JSON."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    indent = 2 if text.lstrip().startswith(("{\n", "[\n")) or "\n " in text[:200] else None
    return json.dumps(redact_value(data, root), indent=indent, ensure_ascii=False) + ("\n" if text.endswith("\n") else "")


def _redact_file(src: Path, dst: Path, root: Path) -> None:
    """Write the filtered copy of ``src`` to ``dst`` (binary files are linked or copied as they are)."""
    suffix = src.suffix.lower()
    if suffix not in _TEXT_SUFFIXES:
        _link_or_copy(src, dst)
        return
    try:
        text = src.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):  # not text after all (a suffix-less binary)
        _link_or_copy(src, dst)
        return
    if suffix == ".json":
        out = _redact_json(text, root)
    elif suffix == ".jsonl":
        lines = [(_redact_json(line, root) or redact_text(line, root)) if line.strip() else line
                 for line in text.splitlines()]
        out = "\n".join(lines) + ("\n" if text.endswith("\n") else "")
    elif suffix == ".html":
        out = text
        for base in _roots(root):
            out = out.replace(base.rstrip("/") + "/", "")
    else:
        out = None
    dst.write_text(out if out is not None else redact_text(text, root), encoding="utf-8")


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # weights can be large: a hard link costs nothing
    except OSError:
        shutil.copy2(src, dst)


@contextlib.contextmanager
def redacted_copy(path: Path, root: Path | None = None) -> Iterator[Path]:
    """A filtered copy of a file or folder (same name), in a temp folder removed on exit."""
    root = root or project_root()
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="mllm4d-redacted-") as tmp:
        target = Path(tmp) / path.name
        if path.is_dir():
            for src in sorted(path.rglob("*")):
                dst = target / src.relative_to(path)
                if src.is_dir():
                    dst.mkdir(parents=True, exist_ok=True)
                elif src.is_file():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    _redact_file(src, dst, root)
            target.mkdir(exist_ok=True)
        else:
            _redact_file(path, target, root)
        yield target
