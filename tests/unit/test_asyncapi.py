"""The AsyncAPI document: generated from the models, valid for the reference parser, and compatible.

The compatibility test is the guard: a model change that breaks the committed document of the same
major version (removed or renamed field, changed type, new required field) fails it.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from pipeline.contracts.asyncapi import DEFAULT_PATH, breaking_changes, generate, load, render
from pipeline.contracts.events import CATALOGUE, SHOOT_DELIVERED, CatalogueEntry
from pipeline.envelope import CamelModel

REPO = Path(__file__).resolve().parents[2]
VALIDATOR = REPO / "tools" / "asyncapi-validate"


@pytest.fixture(scope="session")
def validator() -> Path:
    """The node validator, its packages installed from the committed lock file on first use."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are needed to validate the AsyncAPI document (apt-get install nodejs npm)")
    if not (VALIDATOR / "node_modules" / "@asyncapi" / "parser").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=VALIDATOR, check=True, timeout=300)
    return VALIDATOR / "validate.mjs"


def _validate(validator: Path, document: dict[str, Any], tmp_path: Path) -> tuple[int, dict[str, Any]]:
    path = tmp_path / "asyncapi.yaml"
    path.write_text(render(document))
    out = subprocess.run(["node", str(validator), str(path)], capture_output=True, text=True, timeout=120)
    return out.returncode, json.loads(out.stdout)


def test_the_reference_parser_accepts_the_generated_document_with_every_topic_and_event(
    validator: Path, tmp_path: Path
) -> None:
    code, report = _validate(validator, generate(), tmp_path)
    assert code == 0 and report["valid"], report["errors"]
    assert set(report["channels"]) == {"shoots", "users", "invites", "files", "galleries"}
    assert sorted(report["messages"]) == sorted(f"{e.event_type}.v{e.major}" for e in CATALOGUE)


def test_the_reference_parser_rejects_a_broken_document(validator: Path, tmp_path: Path) -> None:
    broken = generate()
    broken["operations"]["send.files"]["channel"] = {"$ref": "#/channels/nowhere"}
    code, report = _validate(validator, broken, tmp_path)
    assert code == 1 and not report["valid"]


def test_the_committed_document_is_not_broken_by_the_current_models() -> None:
    problems = breaking_changes(load(REPO / DEFAULT_PATH), generate())
    assert problems == [], "breaking change within a major version: " + "; ".join(problems)


def test_the_committed_document_is_up_to_date() -> None:
    committed = load(REPO / DEFAULT_PATH)
    assert committed == json.loads(json.dumps(generate())), "run `darkroom asyncapi -o docs/asyncapi.yaml` and commit it"


# -- the compatibility rule, on variants of one event ---------------------------------------------


class _Delivered(CamelModel):
    shoot_id: str
    message: str | None = None


class _DeliveredRenamed(CamelModel):
    shoot_id: str
    note: str | None = None


class _DeliveredRetyped(CamelModel):
    shoot_id: str
    message: int | None = None


class _DeliveredNewRequired(CamelModel):
    shoot_id: str
    message: str | None = None
    delivered_by: str


class _DeliveredNewOptional(CamelModel):
    shoot_id: str
    message: str | None = None
    delivered_by: str | None = Field(default=None)


def _doc(model: type[CamelModel], **changes: Any) -> dict[str, Any]:
    base = next(e for e in CATALOGUE if e.event_type == SHOOT_DELIVERED)
    entry: CatalogueEntry = replace(base, model=model, **changes)
    return generate([entry])


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (_DeliveredRenamed, "message: removed"),
        (_DeliveredRetyped, "message: type changed"),
        (_DeliveredNewRequired, "deliveredBy: new required field"),
    ],
)
def test_breaking_changes_are_found(model: type[CamelModel], expected: str) -> None:
    problems = breaking_changes(_doc(_Delivered), _doc(model))
    assert any(expected in p for p in problems), problems


def test_a_new_optional_field_is_compatible() -> None:
    assert breaking_changes(_doc(_Delivered), _doc(_DeliveredNewOptional)) == []


def test_a_new_major_version_may_break_and_an_event_may_not_vanish_or_move() -> None:
    old = _doc(_Delivered)
    assert breaking_changes(old, _doc(_DeliveredRenamed, version="2.0.0")) == ["shoot.delivered.v1: removed "
                                                                               "(publish a new major version next to it instead)"]
    moved = copy.deepcopy(old)
    moved["components"]["messages"]["shoot.delivered.v1"]["x-darkroom-key"] = "message"
    assert any("Kafka key changed" in p for p in breaking_changes(old, moved))
