"""Atomic file writes and small I/O helpers shared by every stage.

Every output goes through a temporary file in the same folder and ``os.replace``: a crash or a bad
record never leaves half a JSONL behind, and what was there before survives until the new file is whole.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs get the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj: Any, indent: int | None = None) -> str:
    return json.dumps(obj, default=_default, indent=indent, allow_nan=False)


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(dumps(obj, indent=2) + "\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> int:
    n = 0
    with atomic_path(path) as tmp, tmp.open("w") as fh:
        for row in rows:
            fh.write(dumps(row) + "\n")
            n += 1
    return n


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    rows = []
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON: {exc.msg}") from None
    return rows


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)


def file_digest(path: str | Path, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


# --- Whole folders: build beside the destination, swap in with one rename -----------------------------------

_log = logging.getLogger(__name__)
# Temporary siblings of a folder ``out``: ``.out.staging-<pid>-<random>`` holds the output being built,
# ``.out.old-<pid>-<random>`` the previous output while it is being swapped out. The pid tells a re-run
# whether the writer is still alive (its folder is left alone) or was killed (its folder is stale).
_STAGING, _OLD = "staging", "old"


def _temp_sibling_prefix(path: Path, kind: str) -> str:
    return f".{path.name}.{kind}-{os.getpid()}-"


def _owner_alive(name: str, prefix: str) -> bool:
    """Whether the process that made the temporary sibling ``name`` (``prefix<pid>-<random>``) still runs."""
    try:
        pid = int(name[len(prefix):].split("-", 1)[0])
    except ValueError:
        return False  # not in the shape we write: nobody owns it
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


def remove_stale_temporaries(path: str | Path) -> None:
    """Remove what a killed :func:`atomic_dir` writer left beside ``path``.

    A stale staging folder is deleted. A stale ``old`` folder is the previous output of a swap that was
    killed half-way (only on file systems without an atomic exchange): it is moved back when ``path`` is
    missing, so a reader again sees the old output whole, and deleted otherwise.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return
    staging, old = f".{path.name}.{_STAGING}-", f".{path.name}.{_OLD}-"
    stale = [p for p in path.parent.iterdir()
             if any(p.name.startswith(pre) and not _owner_alive(p.name, pre) for pre in (staging, old))]
    for p in sorted(stale, key=lambda p: p.stat().st_mtime, reverse=True):
        if p.name.startswith(old) and not os.path.lexists(path):
            _log.warning("restoring %s from the interrupted swap %s", path, p)
            os.rename(p, path)
            continue
        _log.info("removing %s, left by a killed writer", p)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    if sys.platform != "linux":
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:  # glibc < 2.28, musl
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # the kernel or the file system lacks it
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _swap_in(new: Path, path: Path) -> None:
    """Put the folder ``new`` at ``path``; the previous folder there ends up at ``new`` (to be deleted)."""
    if not os.path.lexists(path):
        os.rename(new, path)
        return
    if not path.is_dir():
        raise NotADirectoryError(f"{path} exists and is not a folder; refusing to replace it")
    if _exchange(new, path):
        return
    # Two renames: a kill between them leaves no ``path`` but the old output at ``.old-``, which
    # remove_stale_temporaries moves back.
    old = Path(tempfile.mkdtemp(prefix=_temp_sibling_prefix(path, _OLD), dir=path.parent))
    os.rmdir(old)
    os.rename(path, old)
    os.rename(new, path)
    os.rename(old, new)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; if the block succeeds it replaces ``path`` whole.

    A reader (or a kill at any moment) sees either the old folder or the new one, never a mix; on an
    exception the old folder stays as it was and the temporary one is deleted. A symlinked ``path`` is
    resolved, so the new folder is built on the file system it will live on (a rename cannot cross them).
    """
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_sibling_prefix(path, _STAGING), dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp creates 0700; outputs get the usual permissions
        _swap_in(tmp, path)
    finally:
        if os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


# --- Folder digests: what a model folder or a training checkpoint held when it was written ----------------------


def folder_file_digests(folder: str | Path, *, skip: Iterable[str] = ()) -> dict[str, str]:
    """sha256 of every file under ``folder``, by path relative to it (POSIX), except the names in ``skip``."""
    folder, skip = Path(folder), set(skip)
    return {p.relative_to(folder).as_posix(): file_digest(p)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.relative_to(folder).as_posix() not in skip}


def combined_digest(files: dict[str, str]) -> str:
    """One sha256 over ``{relative path: sha256}``: a folder's identity for lineage."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(f"{name}\0{files[name]}\n".encode())
    return h.hexdigest()


def write_folder_digest(folder: str | Path, name: str = "digest.json") -> str:
    """Write ``folder/name`` with the sha256 of each file in ``folder`` and one over them all (returned).
    Written last, so its presence also says the folder was written whole."""
    files = folder_file_digests(folder, skip=[name])
    digest = combined_digest(files)
    write_json(Path(folder) / name, {"algorithm": "sha256", "sha256": digest, "files": files})
    return digest


def read_folder_digest(folder: str | Path, name: str = "digest.json") -> str | None:
    """The combined digest recorded in ``folder/name``; None when the folder has none."""
    path = Path(folder) / name
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())["sha256"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a digest file ({exc})") from None


def check_folder_digest(folder: str | Path, name: str = "digest.json") -> str:
    """The folder's combined digest, after checking every file against ``folder/name``. ValueError naming the
    first file that differs, is missing or is not listed (so a swapped, truncated or added file is caught)."""
    folder = Path(folder)
    path = folder / name
    if not path.is_file():
        raise ValueError(f"{folder} has no {name}: it was not written whole (or not by this pipeline)")
    try:
        recorded = json.loads(path.read_text())
        want: dict[str, str] = dict(recorded["files"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a digest file ({exc})") from None
    have = folder_file_digests(folder, skip=[name])
    for rel in sorted(want.keys() | have.keys()):
        if rel not in have:
            raise ValueError(f"{folder / rel} is listed in {path} but missing")
        if rel not in want:
            raise ValueError(f"{folder / rel} is not listed in {path}: added after the folder was written")
        if have[rel] != want[rel]:
            raise ValueError(f"{folder / rel} does not match {path} (sha256 {have[rel][:12]}..., recorded "
                             f"{want[rel][:12]}...): changed or corrupted since it was written")
    return combined_digest(want)
