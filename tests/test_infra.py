"""The shipped deployment and service definitions parse and point at real flows."""

import importlib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_prefect_deployments_point_at_flows():
    spec = yaml.safe_load((ROOT / "infra" / "prefect.yaml").read_text())
    assert {d["name"] for d in spec["deployments"]} >= {"curation", "pipeline"}
    for d in spec["deployments"]:
        path, name = d["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, name)
        assert hasattr(flow, "deploy"), f"{d['entrypoint']} is not a Prefect flow"
        assert set(d["parameters"]) <= set(flow.parameters.properties)


def test_compose_binds_loopback_and_holds_no_secret():
    text = (ROOT / "infra" / "docker-compose.yaml").read_text()
    spec = yaml.safe_load(text)
    for name, service in spec["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
    assert "${POSTGRES_PASSWORD" in text and "${AWS_SECRET_ACCESS_KEY" in text
