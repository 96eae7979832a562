"""``s3://`` clips and curated outputs (``components.storage``) against a real S3 server: SeaweedFS (``weed``, the
``s3`` extra) on loopback, credentials enforced, boto3 configured only through the environment."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from components import stages
from components.cli import main
from components.config import load_params
from components.scenes import render_scenes
from components.storage import (
    MANIFEST,
    MARKER,
    S3Uri,
    StorageError,
    _relative,
    download,
    is_s3,
    mirror_dir,
    upload,
)
from tests.conftest import SMOKE
from tests.sources.helpers import write_folder

WEED = Path(sys.executable).parent / "weed"
KEY, SECRET = "mllm4d-test", "mllm4d-test-secret"
BUCKET = "clips-bucket"
CLIPS = 4  # every split gets records; more clips only add time


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    """SeaweedFS's all-in-one server on free loopback ports, every one pinned (it silently moves to the next port
    when one is taken), ready when an authenticated S3 call succeeds; always stopped."""
    if not WEED.is_file():
        # a declared dependency (the s3 extra, installed by make setup): missing is a broken install, not a skip
        pytest.fail(f"no SeaweedFS binary at {WEED}: install the project's s3 extra (make setup)")
    names = ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
             "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc"]
    ports = dict(zip(names, _free_ports(len(names)), strict=True))
    data = tmp_path_factory.mktemp("seaweedfs")
    log = (data / "weed.log").open("wb")
    cmd = [str(WEED), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
           "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
           *(f"-{name}={port}" for name, port in ports.items())]
    # weed mini takes the S3 identity from these variables and then refuses any other key
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET})
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    try:
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                              region_name="us-east-1")
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"weed exited with {proc.returncode}:\n{(data / 'weed.log').read_text()[-3000:]}")
            try:
                client.list_buckets()
                break
            except Exception:  # noqa: BLE001 (not up yet: connection refused, or the filer not ready)
                if time.monotonic() > deadline:
                    pytest.fail(f"SeaweedFS not ready in 60 s:\n{(data / 'weed.log').read_text()[-3000:]}")
                time.sleep(0.3)
        client.create_bucket(Bucket=BUCKET)
        yield endpoint, client
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture()
def s3(s3_server, tmp_path, monkeypatch):
    """The environment the code under test reads (and nothing from ~/.aws), run from a scratch project root."""
    endpoint, client = s3_server
    for name in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3",
                 "MLFLOW_TRACKING_URI", "MLLM4D_PARENT_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.chdir(tmp_path)
    return client


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clips") / "clips"
    render_scenes(load_params(SMOKE, [f"scenes.num_clips={CLIPS}"]).scenes, out, workers=1, progress=False)
    return out


def _put_tree(client, root: Path, bucket: str, prefix: str) -> None:
    """Upload as any other tool would: plain objects, no completion marker."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(root).as_posix()}")


def _tree(root: Path, replace: dict[str, str] | None = None) -> dict[str, bytes]:
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST):
        data = path.read_bytes()
        for old, new in (replace or {}).items():
            data = data.replace(old.encode(), new.encode())
        out[path.relative_to(root).as_posix()] = data
    return out


def _cli(*args: str) -> list[str]:
    return ["--params", str(SMOKE), "--quiet", "-S", f"tracking.tracking_uri=sqlite:///{Path.cwd() / 'mlflow.db'}",
            "-S", f"tracking.artifact_location={Path.cwd() / 'mlartifacts'}", *args]


def test_curate_from_s3_to_s3_equals_the_local_curation(s3, clips, tmp_path, capsys):
    _put_tree(s3, clips, BUCKET, "datasets/clips")
    assert main(_cli("curate", "--clips", f"s3://{BUCKET}/datasets/clips", "--out", f"s3://{BUCKET}/curated/v1",
                     "--metrics", "reports/s3.json")) == 0
    assert f"into s3://{BUCKET}/curated/v1 " in capsys.readouterr().out
    (tmp_path / "local_clips").symlink_to(clips)  # the same bytes, under a path of the same shape
    assert main(_cli("curate", "--clips", "local_clips", "--out", "local_out", "--metrics", "reports/local.json")) == 0

    fetched = tmp_path / "fetched"
    listed = download(f"s3://{BUCKET}/curated/v1", fetched, require_complete=True)
    assert {"sft.jsonl", "rft.jsonl", "bench.jsonl", "stats.json"} <= set(listed)
    # Records name frames in the clips' mirror and Set-of-Marks images in the output's, relative to the root.
    clip_mirror, out_mirror = f"data/.s3_cache/{BUCKET}/datasets/clips", f"data/.s3_cache/{BUCKET}/curated/v1"
    record = json.loads((fetched / "bench.jsonl").read_text().splitlines()[0])
    assert record["frame_paths"][0].startswith(clip_mirror + "/") and Path(record["frame_paths"][0]).is_file()
    assert (not record["som_image"]) or record["som_image"].startswith(out_mirror + "/")
    local = _tree(tmp_path / "local_out")
    assert _tree(fetched, {clip_mirror: "local_clips", out_mirror: "local_out"}) == local
    assert json.loads(local["stats.json"])["n_curated_clips"] == CLIPS
    assert (json.loads((tmp_path / "reports/s3.json").read_text())["records.bench"]
            == json.loads((tmp_path / "reports/local.json").read_text())["records.bench"])


def test_a_mirror_fetches_only_what_changed_and_drops_what_went(s3, clips, tmp_path):
    _put_tree(s3, clips / "scene_0000", BUCKET, "mirror/scene_0000")
    dest = tmp_path / "mirror"
    first = download(f"s3://{BUCKET}/mirror", dest)
    assert _tree(dest) == {f"scene_0000/{k}": v for k, v in _tree(clips / "scene_0000").items()}
    stamps = {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file() and p.name != MANIFEST}
    time.sleep(0.02)
    changed, gone = "scene_0000/meta.json", "scene_0000/left/000001.png"
    s3.put_object(Bucket=BUCKET, Key=f"mirror/{changed}", Body=b'{"changed": true}')
    s3.delete_object(Bucket=BUCKET, Key=f"mirror/{gone}")
    second = download(f"s3://{BUCKET}/mirror", dest)
    assert set(second) == set(first) - {gone} and second[changed] != first[changed]
    assert (dest / changed).read_bytes() == b'{"changed": true}' and not (dest / gone).exists()
    untouched = {p: t for p, t in stamps.items() if p.exists() and p.relative_to(dest).as_posix() != changed}
    assert untouched and all(p.stat().st_mtime_ns == t for p, t in untouched.items())  # not fetched again


def test_an_upload_is_published_by_its_marker_and_replaces_the_previous_one(s3, tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    for folder, names in ((old, ["a.txt", "sub/b.txt", "gone.txt"]), (new, ["a.txt", "sub/b.txt"])):
        for name in names:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(f"{folder.name} {name}")
    uri = f"s3://{BUCKET}/out/run"
    upload(old, uri)
    listed = upload(new, uri)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="out/run/")["Contents"]}
    assert keys == {"out/run/a.txt", "out/run/sub/b.txt", f"out/run/{MARKER}"}  # the stale object is gone
    marker = json.loads(s3.get_object(Bucket=BUCKET, Key=f"out/run/{MARKER}")["Body"].read())
    assert marker["files"] == listed and set(listed) == {"a.txt", "sub/b.txt"}
    assert set(download(uri, tmp_path / "read", require_complete=True)) == set(listed)
    assert _tree(tmp_path / "read") == _tree(new)

    # a writer replacing the output: a reader refuses a changed file, and a prefix without its marker
    s3.put_object(Bucket=BUCKET, Key="out/run/a.txt", Body=b"half-way")
    with pytest.raises(StorageError, match=rf"{uri}: 1 files differ from {MARKER} .*a\.txt"):
        download(uri, tmp_path / "read2", require_complete=True)
    s3.delete_object(Bucket=BUCKET, Key=f"out/run/{MARKER}")
    with pytest.raises(StorageError, match=rf"{uri}: no {MARKER}"):
        download(uri, tmp_path / "read3", require_complete=True)


def test_missing_bucket_or_prefix_is_a_clear_error_naming_the_uri(s3, clips, capsys):
    assert main(_cli("curate", "--clips", "s3://no-such-bucket/clips", "--out", "out")) == 1
    err = capsys.readouterr().err
    assert "s3://no-such-bucket/clips: bucket 'no-such-bucket' does not exist" in err
    assert main(_cli("curate", "--clips", f"s3://{BUCKET}/nothing/here", "--out", "out")) == 1
    assert f"s3://{BUCKET}/nothing/here: no objects under this prefix" in capsys.readouterr().err
    _put_tree(s3, clips, BUCKET, "errors/clips")
    assert main(_cli("curate", "--clips", f"s3://{BUCKET}/errors/clips", "--out", "s3://no-such-bucket/out")) == 1
    assert "s3://no-such-bucket/out: bucket 'no-such-bucket' does not exist" in capsys.readouterr().err
    assert not Path("data/.s3_cache/no-such-bucket").exists()  # refused before curating
    assert main(_cli("curate", "--clips", f"s3://{BUCKET}/errors/clips", "--out", f"s3://{BUCKET}")) == 1
    assert f"s3://{BUCKET}: an output needs a prefix" in capsys.readouterr().err


def test_wrong_credentials_name_the_uri_and_the_variables(s3, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(StorageError, match=rf"s3://{BUCKET}/x: .*refused the credentials.*AWS_SECRET_ACCESS_KEY"):
        download(f"s3://{BUCKET}/x", Path("x"))


def test_the_scenes_stage_ingests_a_dataset_from_s3(s3, tmp_path):
    recording = write_folder(tmp_path / "recording", n=7, poses=True)
    _put_tree(s3, recording, BUCKET, "raw/recording")
    made = {}
    for name, root in (("local", str(recording)), ("s3", f"s3://{BUCKET}/raw/recording")):
        params = load_params(SMOKE, ["source.format=folder", f"source.root={root}", "source.window=3",
                                     f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
                                     f"tracking.artifact_location={tmp_path / 'mlartifacts'}"])
        clips = stages.scenes(params, tmp_path / name, root=tmp_path)
        assert [c.name for c in clips] == ["recording_000000", "recording_000003"]
        made[name] = _tree(tmp_path / name)
    # meta.json names the folder ingest read: for s3 the mirror, as records name mirrored frames
    mirror = f"data/.s3_cache/{BUCKET}/raw/recording"
    assert f'"root": "{mirror}"'.encode() in made["s3"]["recording_000000/meta.json"]
    assert _tree(tmp_path / "s3", {mirror: str(recording)}) == made["local"]


@pytest.mark.parametrize("uri, bucket, prefix", [("s3://b/p/q/", "b", "p/q"), ("s3://b", "b", ""), ("s3://b/", "b", "")])
def test_uri_parsing(uri, bucket, prefix):
    assert S3Uri.parse(uri) == S3Uri(bucket, prefix) and is_s3(uri)
    assert mirror_dir(uri, Path("/root")) == Path("/root/data/.s3_cache", bucket, prefix)


def test_bad_uris_and_keys_are_refused():
    assert not is_s3(Path("s3://b/p"))  # a Path has already lost a slash: "s3:/b/p"
    with pytest.raises(ValueError, match="names no bucket"):
        S3Uri.parse("s3:///p")
    with pytest.raises(StorageError, match="not a relative path under the prefix"):
        _relative("p/../../etc/passwd", S3Uri("b", "p"))
