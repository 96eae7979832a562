"""``s3://`` clip roots, dataset roots and curated outputs, through boto3 (``DESIGN.md``: data local or on S3).

The components read and write local folders only. An ``s3://bucket/prefix`` gets a local mirror,
``<root>/data/.s3_cache/<bucket>/<prefix>`` (``mirror_dir``), and this module moves files between the two:

* ``download``: the objects under the prefix into the mirror. An object whose size and ETag are those the last
  download recorded (``.s3_manifest.json`` in the mirror) is not fetched again; a file the prefix no longer holds
  is deleted, so the mirror is the prefix (it belongs to this module: never point it at a folder of your own).
* ``upload``: a folder to the prefix, published with a completion marker. S3 has no rename, so no order of writes
  keeps a reader from seeing a half-written prefix; instead the marker ``_COMPLETE.json``, listing every file with
  its size and ETag, is deleted first and written last. A reader (``download(..., require_complete=True)``) reads
  only a prefix that has a marker, and exactly the files it lists, so it never takes a half output or a previous
  run's leftovers for the output. Objects under the prefix that the folder does not hold are deleted, as a local
  output folder is replaced whole; a bucket's root is refused as an output for that reason.

Endpoint and credentials come from the environment, where boto3 reads them (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``), never from params: they reach neither
MLflow nor ``dvc.lock``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

log = logging.getLogger(__name__)

CACHE = Path("data") / ".s3_cache"
MARKER = "_COMPLETE.json"
MANIFEST = ".s3_manifest.json"
_AUTH_ERRORS = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}


class StorageError(ValueError):
    """The object store cannot be used as configured (credentials, endpoint, a prefix being rewritten); the
    message names the URI and what to fix."""


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    prefix: str  # "" (the bucket's root) or a key prefix without slashes at either end

    @classmethod
    def parse(cls, uri: str) -> S3Uri:
        if not is_s3(uri):
            raise ValueError(f"not an s3:// URI: {uri!r}")
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        if not bucket:
            raise ValueError(f"{uri!r} names no bucket: write s3://BUCKET/PREFIX")
        return cls(bucket, prefix.strip("/"))

    @property
    def key_prefix(self) -> str:
        """The keys under this prefix start with this ("clips/", never "clips", which would match "clips2/")."""
        return f"{self.prefix}/" if self.prefix else ""

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def is_s3(uri: str | Path) -> bool:
    # a Path has already turned "s3://b/p" into "s3:/b/p": the caller must keep s3 URIs as strings
    return isinstance(uri, str) and uri.startswith("s3://")


def mirror_dir(uri: str, root: Path) -> Path:
    """Where ``uri``'s objects live locally, relative to the working directory when under it: records hold
    frame paths, and a local curation's are relative to the project root, which is the working directory."""
    s3 = S3Uri.parse(uri)
    path = Path(root) / CACHE / s3.bucket / s3.prefix
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def local_dir(uri: str | Path, root: Path) -> Path:
    """A folder to read: ``uri`` itself, or for an ``s3://`` URI its mirror, downloaded first."""
    if not is_s3(uri):
        return Path(uri)
    dest = mirror_dir(str(uri), root)
    download(str(uri), dest)
    return dest


def _client() -> Any:
    import boto3
    from botocore.config import Config

    # An S3-compatible store (SeaweedFS, MinIO) at AWS_ENDPOINT_URL serves buckets as paths: "bucket.host" names
    # that virtual-host addressing would build do not resolve there.
    custom = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    # A session per call: boto3's default session keeps the first credentials it read for the process's life.
    return boto3.session.Session().client("s3", config=Config(s3={"addressing_style": "path"}) if custom else None)


def _explain(exc: Exception, uri: S3Uri, client: Any) -> Exception:
    """A boto3 failure as an error that names the URI and what to fix; anything unforeseen as it is."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    endpoint = client.meta.endpoint_url
    if isinstance(exc, NoCredentialsError):
        return StorageError(f"{uri}: no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if isinstance(exc, EndpointConnectionError):
        return StorageError(f"{uri}: cannot reach the object store at {endpoint}: is AWS_ENDPOINT_URL right?")
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchBucket", "404"):
            return FileNotFoundError(f"{uri}: bucket {uri.bucket!r} does not exist at {endpoint}")
        if code in _AUTH_ERRORS or code == "403":
            return StorageError(f"{uri}: the object store at {endpoint} refused the credentials ({code}): check "
                                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    return exc


def _listing(client: Any, uri: S3Uri) -> dict[str, dict]:
    """Every object under the prefix: path relative to it -> {size, etag}. "Folder" placeholders are skipped."""
    found: dict[str, dict] = {}
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=uri.bucket, Prefix=uri.key_prefix):
            for obj in page.get("Contents", []):
                if not obj["Key"].endswith("/"):
                    found[_relative(obj["Key"], uri)] = {"size": obj["Size"], "etag": obj["ETag"]}
    except Exception as exc:  # re-raised, explained when it is a known failure
        raise _explain(exc, uri, client) from exc
    return found


def _relative(key: str, uri: S3Uri) -> str:
    rel = key[len(uri.key_prefix):]
    parts = PurePosixPath(rel).parts
    # a key is any string: "../x" or "/x" would write outside the mirror
    if not parts or rel.startswith("/") or ".." in parts:
        raise StorageError(f"{uri}: object key {key!r} is not a relative path under the prefix; refusing to "
                           "mirror it")
    return rel


def download(uri: str, dest: Path, *, require_complete: bool = False) -> dict[str, dict]:
    """Mirror ``uri`` into ``dest``; return what it holds (path -> size and ETag).

    With a completion marker under the prefix, exactly the files it lists; without one, every object, unless
    ``require_complete`` (a reader of an ``upload``-ed output), which refuses. An object fetched before with the
    same size and ETag is kept; files no longer under the prefix are deleted."""
    s3, client, dest = S3Uri.parse(uri), _client(), Path(dest)
    remote = _listing(client, s3)
    if not remote:
        raise FileNotFoundError(f"{uri}: no objects under this prefix in bucket {s3.bucket!r}")
    if MARKER in remote:
        wanted = _complete_listing(client, s3, remote)
    elif require_complete:
        raise StorageError(f"{uri}: no {MARKER}: the output is being written, or its writer failed; read it once "
                           "the writer has finished")
    else:
        wanted = remote
    dest.mkdir(parents=True, exist_ok=True)
    manifest_path = dest / MANIFEST
    had = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    fetched = 0
    for rel, info in sorted(wanted.items()):
        local = dest / rel
        if had.get(rel) == info and local.is_file() and local.stat().st_size == info["size"]:
            continue
        local.parent.mkdir(parents=True, exist_ok=True)
        part = local.with_name(f".{local.name}.part")  # a killed download leaves a dot-file, never a short file
        try:
            client.download_file(s3.bucket, f"{s3.key_prefix}{rel}", str(part))
        except Exception as exc:  # re-raised, explained when it is a known failure
            raise _explain(exc, s3, client) from exc
        os.replace(part, local)
        fetched += 1
    for path in sorted(dest.rglob("*"), reverse=True):  # files before their folders
        rel = path.relative_to(dest).as_posix()
        if path.is_file() and rel != MANIFEST and rel not in wanted:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    manifest_path.write_text(json.dumps(wanted, indent=1, sort_keys=True))
    log.info("%s -> %s: %d files, %d fetched", uri, dest, len(wanted), fetched)
    return wanted


def _complete_listing(client: Any, uri: S3Uri, remote: dict[str, dict]) -> dict[str, dict]:
    try:
        body = client.get_object(Bucket=uri.bucket, Key=f"{uri.key_prefix}{MARKER}")["Body"].read()
    except Exception as exc:  # re-raised, explained when it is a known failure
        raise _explain(exc, uri, client) from exc
    listed = json.loads(body)["files"]
    changed = sorted(rel for rel, info in listed.items() if remote.get(rel) != info)
    if changed:
        raise StorageError(f"{uri}: {len(changed)} files differ from {MARKER} (first: {changed[0]}): a writer is "
                           "replacing this output; read it once the writer has finished")
    return listed


def check_output(uri: str) -> None:
    """Fail now, naming ``uri``, if it cannot take an ``upload``: no prefix, no such bucket, credentials refused.
    A stage calls it before the work whose output could not be written."""
    s3, client = S3Uri.parse(uri), _client()
    if not s3.prefix:
        raise ValueError(f"{uri}: an output needs a prefix (s3://BUCKET/PREFIX): the objects under it that the "
                         "output does not hold are deleted, which at a bucket's root would be the whole bucket")
    try:
        client.head_bucket(Bucket=s3.bucket)
    except Exception as exc:  # re-raised, explained when it is a known failure
        raise _explain(exc, s3, client) from exc


def upload(src: Path, uri: str) -> dict[str, dict]:
    """Publish the folder ``src`` at ``uri`` (see the module docstring); return the marker's listing."""
    check_output(uri)
    s3, client, src = S3Uri.parse(uri), _client(), Path(src)
    files = sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file() and p.name != MANIFEST)
    if not files:
        raise ValueError(f"nothing to upload: {src} holds no files")
    try:
        client.delete_object(Bucket=s3.bucket, Key=f"{s3.key_prefix}{MARKER}")  # incomplete from here on
        for rel in files:
            client.upload_file(str(src / rel), s3.bucket, f"{s3.key_prefix}{rel}")
    except Exception as exc:  # re-raised, explained when it is a known failure
        raise _explain(exc, s3, client) from exc
    remote = _listing(client, s3)
    written = {rel: remote[rel] for rel in files}
    stale = [f"{s3.key_prefix}{rel}" for rel in remote if rel not in written and rel != MARKER]
    try:
        for start in range(0, len(stale), 1000):  # DeleteObjects takes at most 1000 keys
            client.delete_objects(Bucket=s3.bucket, Delete={"Objects": [{"Key": k} for k in stale[start:start + 1000]]})
        client.put_object(Bucket=s3.bucket, Key=f"{s3.key_prefix}{MARKER}",
                          Body=json.dumps({"files": written}, indent=1, sort_keys=True).encode())
    except Exception as exc:  # re-raised, explained when it is a known failure
        raise _explain(exc, s3, client) from exc
    log.info("%s -> %s: %d files (%d stale objects deleted)", src, uri, len(written), len(stale))
    return written
