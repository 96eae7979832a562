"""The registered model serves what evaluation measured: ``mlflow models serve models:/mllm4d@champion``, run by
an interpreter that cannot import this repository, answers bench records (frames sent as base64) with exactly
the completions evaluation generated; paths and bad base64 are refused, naming the field."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from components.config import ModelConfig, Params, TrackingConfig
from components.tracking import PARENT_RUN_ENV, stage_run
from components.tracking.registry import (
    MEDIA_ROOT_ENV,
    RequestError,
    VLMRequest,
    promote,
    record_from_request,
    register_model,
)

NAME = "mllm4d"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(PARENT_RUN_ENV, raising=False)
    monkeypatch.delenv(MEDIA_ROOT_ENV, raising=False)


def b64(path: str | Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def request_for(record: dict) -> dict:
    """What a client sends for a curated record: its prompt fields and its frame files' bytes."""
    return {
        "question": record["question"], "answer_type": record["answer_type"], "options": record["options"],
        "unit": record["unit"], "regions": [r["token"] for r in record["regions"]],
        "timestamps": record["timestamps"], "frame_numbers": record["frames"],
        "frames": [b64(p) for p in record["frame_paths"]],
        "som_image": b64(record["som_image"]) if record["som_image"] else None,
    }


def bench_sample(curated_records: list[dict]) -> list[dict]:
    bench = [r for r in curated_records if r["split"] == "bench"]
    by_name = [r for r in bench if r["answer_type"] == "mc" and not r["som_image"]]
    region = [r for r in bench if r["som_image"]]
    numeric = [r for r in bench if r["answer_type"] == "numeric"]
    assert len(by_name) >= 2 and region and numeric, "the smoke bench should hold every kind of record"
    return [by_name[0], region[0], numeric[0], by_name[-1]]


def isolated_python(where: Path) -> Path:
    """A venv that sees this project's installed packages but not the project: a path line in a .pth adds
    the project venv's site-packages without running the .pth files inside it, so the editable install's
    finder (which maps ``components`` to this checkout) stays off."""
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = (venv / "lib").glob("python3*/site-packages")
    (site / "project-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # `mlflow models serve` starts the server as a bare `uvicorn` from PATH: it must be this interpreter's.
    uvicorn = venv / "bin" / "uvicorn"
    uvicorn.write_text(f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom uvicorn.main import main\nsys.exit(main())\n")
    uvicorn.chmod(uvicorn.stat().st_mode | stat.S_IXUSR)
    return venv / "bin" / "python"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, rows: list[dict]) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps({"inputs": rows}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_until_up(proc: subprocess.Popen, port: int, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the model server exited with {proc.returncode}:\n{log.read_text()[-6000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"the model server did not answer /ping in {timeout:.0f} s:\n{log.read_text()[-6000:]}")


def test_served_champion_answers_as_evaluation_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smoke_params: Params, model_cfg: ModelConfig,
    tiny_base: Path, curated_records: list[dict],
) -> None:
    from components.evaluation.harness import evaluate
    from components.models import load_model
    from components.models.generation import make_generate_fn

    records = bench_sample(curated_records)
    settings = smoke_params.evaluate
    # evaluate_checkpoint's path: load_model, make_generate_fn, the harness's batches and answer extraction
    model, processor = load_model(tiny_base, model_cfg)
    generate = make_generate_fn(model, processor, model_cfg, max_new_tokens=settings.max_new_tokens)
    predictions = evaluate(records, generate, batch_size=settings.batch_size, blind_baseline=True,
                           shuffled_baseline=False, n_boot=100, progress=False).predictions
    # the frames steer the completions, so a server that prepared them differently would not match
    assert any(p["output"] != p["blind"]["output"] for p in predictions)

    with stage_run("evaluate_serve", TrackingConfig(experiment="serve-test"), tmp_path) as run:
        version = register_model(run, tiny_base, model_cfg=model_cfg, max_new_tokens=settings.max_new_tokens,
                                 batch_size=settings.batch_size, name=NAME, tags={})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", run.tracking_uri)
    promote(NAME, version)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    python = isolated_python(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", PARENT_RUN_ENV)}
    env.update(PATH=f"{python.parent}:/usr/bin:/bin", MLFLOW_TRACKING_URI=run.tracking_uri)
    probe = subprocess.run([str(python), "-c", "import mlflow, components"], check=False, cwd=outside, env=env,
                           capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'components'" in probe.stderr, probe.stderr

    port, log = free_port(), tmp_path / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [str(python), "-m", "mlflow", "models", "serve", "-m", f"models:/{NAME}@champion", "--env-manager", "local",
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=outside, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_until_up(server, port, log)
        status, body = post(port, [request_for(r) for r in records])
        assert status == 200, body
        want = [{"completion": p["output"],
                 "answer": p["extracted"]["letter"] or (None if p["extracted"]["value"] is None
                                                        else str(p["extracted"]["value"]))}
                for p in predictions]
        assert body["predictions"] == want

        with_path = request_for(records[0]) | {"frames": list(records[0]["frame_paths"])}
        status, body = post(port, [with_path])
        assert status == 400 and "request 0: frames[0]: looks like a file path" in body["message"], body
        named = request_for(records[0]) | {"frames": None, "frame_paths": list(records[0]["frame_paths"])}
        status, body = post(port, [named])
        assert status == 400 and "request 0: frame_paths[0]: file paths are refused" in body["message"], body
        broken = request_for(records[0])
        broken["frames"][1] = broken["frames"][1][:-5] + "!!!!="
        status, body = post(port, [request_for(records[1]), broken])
        assert status == 400 and "request 1: frames[1]: not valid base64" in body["message"], body
        status, body = post(port, [request_for(records[0]) | {"frame_path": "x.png"}])  # a misspelt field
        assert status == 400 and "frame_path" in body["message"], body
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the CLI and the uvicorn it started share this session
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def png(path: Path, color: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 10), color).save(path)
    return path


def row(**fields) -> VLMRequest:
    base = {"question": "Is the car moving?", "answer_type": "mc", "options": ["yes", "no"], "timestamps": [0.0, 0.5]}
    return VLMRequest(**(base | fields))


def test_requests_are_checked_naming_the_field(tmp_path: Path) -> None:
    cfg = ModelConfig(num_frames=2, time_cue="prompt")
    frames = [b64(png(tmp_path / f"f{i}.png", (i * 90, 0, 0))) for i in range(2)]
    record = record_from_request(row(frames=frames, frame_numbers=[0, 15]), 0, cfg, None)
    assert [im.getpixel((0, 0)) for im in record["frame_images"]] == [(0, 0, 0), (90, 0, 0)]
    assert record["frames"] == [0, 15] and record["som_frame"] is None

    cases = {
        "answer_type: must be 'mc' or 'numeric'": row(answer_type="yesno", frames=frames, frame_numbers=[0, 1]),
        "options: a multiple-choice question needs its options": row(options=None, frames=frames, frame_numbers=[0, 1]),
        "frame_numbers: required by this model": row(frames=frames),
        "timestamps: must be the frames' times": row(timestamps=[0.5, 0.0], frames=frames, frame_numbers=[0, 1]),
        "frames: 1 images for 2 timestamps": row(frames=frames[:1], frame_numbers=[0, 1]),
        "som_image: required when regions are named": row(regions=["<R1>"], frames=frames, frame_numbers=[0, 1]),
        "frames[1]: not a readable image": row(frames=[frames[0], b64(tmp_path / "f0.png")[:40]],
                                               frame_numbers=[0, 1]),
    }
    for message, request in cases.items():
        with pytest.raises(RequestError, match="^" + re.escape(f"request 3: {message}")):
            record_from_request(request, 3, cfg, None)


def test_paths_are_read_only_inside_the_media_root(tmp_path: Path) -> None:
    cfg = ModelConfig(num_frames=2, time_cue="tpe")
    root = tmp_path / "media"
    inside = [png(root / "clip" / f"{i}.png", (0, i * 90, 0)) for i in range(2)]
    outside = png(tmp_path / "secret.png", (1, 2, 3))
    (root / "link.png").symlink_to(outside)

    record = record_from_request(row(frame_paths=["clip/0.png", str(inside[1])]), 0, cfg, root)
    assert [im.getpixel((0, 0)) for im in record["frame_images"]] == [(0, 0, 0), (0, 90, 0)]
    for escape in ("../secret.png", str(outside), "link.png"):
        with pytest.raises(RequestError, match=r"request 0: frame_paths\[1\]: .* is outside"):
            record_from_request(row(frame_paths=["clip/0.png", escape]), 0, cfg, root)
    with pytest.raises(RequestError, match=r"frame_paths\[0\]: no file 'clip/9.png'"):
        record_from_request(row(frame_paths=["clip/9.png", "clip/1.png"]), 0, cfg, root)
    with pytest.raises(RequestError, match=r"frame_paths\[0\]: file paths are refused"):
        record_from_request(row(frame_paths=["clip/0.png", "clip/1.png"]), 0, cfg, None)
