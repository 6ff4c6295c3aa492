"""What an operator expects of the deployment files beyond their schemas: one image, a PDB per stage,
a PodMonitor, topics left to the operator, a dashboard on metrics the workers really export, no bench/ in the image."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.metrics import StageMetrics
from tests.kustomize import render
from tests.unit.test_containers import COMPOSE, DOCKERFILE, OVERLAYS, compose_model, overlay_config, overlay_docs

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "darkroom.json"
OVERLAY_NAMES = [o.name for o in OVERLAYS]


def _deployments(overlay: str) -> list[dict]:
    return [d for d in overlay_docs(overlay) if d["kind"] == "Deployment"]


def test_there_are_dev_and_prod_overlays_on_one_base() -> None:
    assert {"dev", "prod"} <= set(OVERLAY_NAMES)
    for overlay in OVERLAYS:
        assert yaml.safe_load((overlay / "kustomization.yaml").read_text())["resources"] == ["../../base"]


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_the_image_is_set_once_by_the_overlay(overlay: str) -> None:
    [image] = yaml.safe_load((REPO / "deploy/k8s/overlays" / overlay / "kustomization.yaml").read_text())["images"]
    wanted = f"{image['newName']}:{image['newTag']}"
    used = {c["image"] for d in _deployments(overlay) for c in d["spec"]["template"]["spec"]["containers"]}
    assert used == {wanted}
    # The base names no registry or tag: nothing to edit per file.
    base_images = {c["image"] for d in render(REPO / "deploy/k8s/base") if d["kind"] == "Deployment"
                   for c in d["spec"]["template"]["spec"]["containers"]}
    assert base_images == {image["name"]}


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_every_deployment_has_a_pod_disruption_budget_and_is_scraped(overlay: str) -> None:
    docs = overlay_docs(overlay)
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    [monitor] = [d for d in docs if d["kind"] == "PodMonitor"]
    for deployment in _deployments(overlay):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [p for p in pdbs if p["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(covering) == 1, deployment["metadata"]["name"]
        assert covering[0]["spec"].get("maxUnavailable") == 1
        assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ports = {p["name"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= ports


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_the_reconciler_runs_as_one_replica(overlay: str) -> None:
    [reconciler] = [d for d in _deployments(overlay) if d["metadata"]["name"] == "darkroom-reconciler"]
    assert reconciler["spec"]["replicas"] == 1
    assert reconciler["spec"]["template"]["spec"]["containers"][0]["args"] == ["worker", "reconcile"]
    assert not [d for d in overlay_docs(overlay) if d["kind"] == "ScaledObject"
                and d["spec"]["scaleTargetRef"]["name"] == "darkroom-reconciler"]


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_topics_are_left_to_the_operator_and_prefixed(overlay: str) -> None:
    config = overlay_config(overlay)
    assert config["DARKROOM_TOPICS__MANAGE"] == "false"
    assert config["DARKROOM_TOPICS__PREFIX"]  # each overlay its own prefix: deployments can share a cluster


def test_the_image_and_compose_workers_do_not_manage_topics() -> None:
    runtime = DOCKERFILE.read_text().split("AS runtime", 1)[1]
    assert "DARKROOM_TOPICS__MANAGE=false" in runtime
    services = compose_model()["services"]
    workers = {n: s for n, s in services.items() if (s.get("command") or [])[:1] == ["worker"]}
    assert workers and all(s["environment"]["DARKROOM_TOPICS__MANAGE"] == "false" for s in workers.values())
    assert services["topics"]["command"] == ["topics", "ensure", "--apply"]
    assert COMPOSE.exists()


def test_nothing_of_bench_goes_into_the_image() -> None:
    copied = [ln for ln in DOCKERFILE.read_text().splitlines() if ln.startswith("COPY ")]
    assert not [ln for ln in copied if "bench" in ln]
    assert "!bench" not in (REPO / ".dockerignore").read_text()


def _exported_metric_names() -> set[str]:
    """Every series name a worker's /metrics shows once each metric has a value."""
    metrics = StageMetrics("resize")
    metrics.processed("file.uploaded", 0.1)
    metrics.failed("file.uploaded", "permanent", 0.1)
    metrics.retried("file.uploaded")
    metrics.dead_lettered("file.uploaded")
    metrics.skipped("file.processed")
    metrics.on_stats(json.dumps({"topics": {"files": {"partitions": {"0": {"desired": True, "consumer_lag": 3}}}}}))
    text = metrics.render().decode()
    metrics.shutdown()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_every_metric_the_dashboard_queries_is_exported_by_the_workers() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs.append(dashboard["templating"]["list"][1]["query"]["query"])
    used = {name for e in exprs for name in re.findall(r"\b((?:darkroom|process)_[a-z_]+)\b", e)}
    exported = _exported_metric_names()
    assert used - exported == set(), f"dashboard queries metrics no worker exports: {sorted(used - exported)}"
    # What the issue asks the dashboard to show.
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for word in ("lag", "photos per second", "latency", "dead letters", "memory"):
        assert word in titles


def test_version_and_license() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and version("darkroom") in result.output
    license_text = (REPO / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert 'license = "Apache-2.0"' in (REPO / "pyproject.toml").read_text()
