"""The event catalogue as an AsyncAPI 3 document, generated from the payload models, and its compatibility rule.

`generate()` reads `pipeline.contracts.events.CATALOGUE` (the one table of event type, version, model, topic
and key rule) and writes one channel per topic, one message per (event, major version) with its
Kafka key and headers, and one `send` operation per channel. `breaking_changes(old, new)` compares
two documents message by message: within one major version, a consumer written against `old` must
be able to read every event valid under `new`.

`darkroom asyncapi -o docs/asyncapi.yaml` rewrites the committed document; `--check` fails when the
current models break the committed one.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click
import yaml

from pipeline.contracts.events import CATALOGUE, FILE_PROCESSED, H_RENDITION, CatalogueEntry
from pipeline.contracts.topics import default_topic_specs
from pipeline.envelope import (
    CONTENT_TYPE,
    H_CONTENT_TYPE,
    H_EVENT_TYPE,
    H_TIMESTAMP,
    H_TRACEPARENT,
    H_VERSION,
    Envelope,
)
from pipeline.settings import Settings

ASYNCAPI_VERSION = "3.0.0"
# The document's own version: bump the major when a breaking change is made on purpose (new major events).
DOCUMENT_VERSION = "1.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
DEFAULT_PATH = Path("docs/asyncapi.yaml")

_REF = "#/components/schemas/{model}"
_TOPIC_DOCS = {
    "shoots": "Shoot lifecycle, keyed by shoot id.",
    "users": "Platform users, keyed by user id.",
    "invites": "Invites of clients to galleries, keyed by invite id.",
    "files": "Uploads and renditions, keyed by file id (one shoot spreads over every partition).",
    "galleries": "Gallery membership, keyed by shoot id (one gallery's updates stay in order).",
}


def message_id(entry: CatalogueEntry) -> str:
    """Component name of an event's message: its type and major version, e.g. `file.processed.v1`."""
    return f"{entry.event_type}.v{entry.major}"


def _headers(entry: CatalogueEntry) -> dict[str, Any]:
    props: dict[str, Any] = {
        H_EVENT_TYPE: {"type": "string", "const": entry.event_type, "description": "Filter without parsing the body."},
        H_VERSION: {"type": "string", "pattern": rf"^{entry.major}\.\d+\.\d+$", "description": "Semver of the payload."},
        H_TIMESTAMP: {"type": "string", "pattern": r"^\d+$", "description": "occurredAt in epoch milliseconds."},
        H_CONTENT_TYPE: {"type": "string", "const": CONTENT_TYPE},
        H_TRACEPARENT: {"type": "string", "description": "W3C trace context continuing the causing event's trace."},
    }
    required = [H_EVENT_TYPE, H_VERSION, H_TIMESTAMP, H_CONTENT_TYPE, H_TRACEPARENT]
    if entry.event_type == FILE_PROCESSED:
        props[H_RENDITION] = {"type": "string", "description": "The rendition made, so stages filter without parsing."}
    return {"type": "object", "properties": props, "required": required}


def _topic_configuration(config: dict[str, str]) -> dict[str, Any]:
    """The topic spec's configs in the Kafka binding's shape."""
    return {
        "cleanup.policy": config.get("cleanup.policy", "delete").split(","),
        "retention.ms": int(config.get("retention.ms", "-1")),
    }


def _hoist(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """Move pydantic's `$defs` into components/schemas (refs already point there)."""
    for name, sub in schema.pop("$defs", {}).items():
        schemas[name] = sub
    return schema


def generate(catalogue: Iterable[CatalogueEntry] = CATALOGUE, partitions: int | None = None,
             prefix: str = "") -> dict[str, Any]:
    """The AsyncAPI 3 document of `catalogue` (default: every event darkroom knows).

    `prefix` (DARKROOM_TOPICS__PREFIX) goes before every topic's address; channel ids stay the logical names.
    """
    entries = list(catalogue)
    specs = {s.name: s for s in default_topic_specs()}
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    envelope = _hoist(Envelope.model_json_schema(by_alias=True, ref_template=_REF), schemas)
    envelope["description"] = "The envelope of every event; `data` holds the typed payload."
    schemas["Envelope"] = envelope
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for entry in entries:
        name = entry.model.__name__
        schemas[name] = _hoist(entry.model.model_json_schema(by_alias=True, ref_template=_REF), schemas)
        mid = message_id(entry)
        key_alias = entry.model.model_fields[entry.key_field].alias or entry.key_field
        messages[mid] = {
            "name": entry.event_type,
            "title": f"{entry.event_type} v{entry.major}",
            "summary": entry.summary,
            "contentType": CONTENT_TYPE,
            "headers": _headers(entry),
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/Envelope"},
                    {
                        "type": "object",
                        "properties": {
                            "eventType": {"const": entry.event_type},
                            "version": {"type": "string", "pattern": rf"^{entry.major}\.\d+\.\d+$"},
                            "data": {"$ref": _REF.format(model=name)},
                        },
                    },
                ]
            },
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": f"data.{key_alias}"},
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            },
            "x-darkroom-version": entry.version,
            "x-darkroom-key": key_alias,
        }
        channel = channels.setdefault(entry.topic, {
            "address": prefix + entry.topic,
            "description": _TOPIC_DOCS.get(entry.topic, ""),
            "messages": {},
            "bindings": {"kafka": {
                "topic": prefix + entry.topic,
                "partitions": partitions or (specs[entry.topic].partitions if entry.topic in specs else 6),
                "topicConfiguration": _topic_configuration(specs[entry.topic].config if entry.topic in specs else {}),
                "bindingVersion": KAFKA_BINDING_VERSION,
            }},
        })
        channel["messages"][mid] = {"$ref": f"#/components/messages/{mid}"}
        operations.setdefault(f"send.{entry.topic}", {
            "action": "send",
            "channel": {"$ref": f"#/channels/{entry.topic}"},
            "summary": f"Events published on {entry.topic}.",
            "messages": [],
        })["messages"].append({"$ref": f"#/channels/{entry.topic}/messages/{mid}"})
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "darkroom events",
            "version": DOCUMENT_VERSION,
            "description": "Every event of the darkroom platform (ADR-009), generated from pipeline/contracts/events.py. "
                           "Do not edit: run `darkroom asyncapi -o docs/asyncapi.yaml`.",
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {"local": {"host": "127.0.0.1:19092", "protocol": "kafka",
                              "description": "The local stack of `darkroom dev up`."}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render(document: dict[str, Any]) -> str:
    """The document as YAML (stable order, so the committed file diffs cleanly)."""
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120)


# -- compatibility --------------------------------------------------------------------------------


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        return dict(doc["components"]["schemas"][ref.rsplit("/", 1)[1]])
    return schema


def _types(doc: dict[str, Any], schema: dict[str, Any]) -> frozenset[str]:
    """The JSON types a (sub)schema admits, refs and nullable unions included."""
    schema = _resolve(doc, schema)
    if "anyOf" in schema or "oneOf" in schema:
        return frozenset().union(*(_types(doc, s) for s in schema.get("anyOf", schema.get("oneOf", []))))
    if "type" in schema:
        t = schema["type"]
        return frozenset(t if isinstance(t, list) else [t])
    if "const" in schema or "enum" in schema:
        values = schema.get("enum", [schema.get("const")])
        return frozenset(type(v).__name__ for v in values)
    return frozenset({"any"})


def _payload(doc: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    data_ref = message["payload"]["allOf"][1]["properties"]["data"]
    return _resolve(doc, data_ref)


def _compare(old_doc: dict[str, Any], old: dict[str, Any], new_doc: dict[str, Any], new: dict[str, Any],
             where: str, depth: int = 0) -> list[str]:
    problems: list[str] = []
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    old_req, new_req = set(old.get("required", [])), set(new.get("required", []))
    for name in sorted(old_props):
        if name not in new_props:
            problems.append(f"{where}.{name}: removed (or renamed)")
            continue
        old_t, new_t = _types(old_doc, old_props[name]), _types(new_doc, new_props[name])
        if old_t != new_t:
            problems.append(f"{where}.{name}: type changed from {sorted(old_t)} to {sorted(new_t)}")
            continue
        if name in old_req and name not in new_req:
            problems.append(f"{where}.{name}: no longer required (readers rely on it)")
        old_sub, new_sub = _resolve(old_doc, old_props[name]), _resolve(new_doc, new_props[name])
        if depth < 5:
            if "properties" in old_sub:
                problems += _compare(old_doc, old_sub, new_doc, new_sub, f"{where}.{name}", depth + 1)
            if "items" in old_sub and "items" in new_sub:
                old_items, new_items = _resolve(old_doc, old_sub["items"]), _resolve(new_doc, new_sub["items"])
                problems += _compare(old_doc, old_items, new_doc, new_items, f"{where}.{name}[]", depth + 1)
            if "enum" in old_sub and set(old_sub["enum"]) - set(new_sub.get("enum", old_sub["enum"])):
                problems.append(f"{where}.{name}: enum values removed")
    for name in sorted(new_req - old_req):
        if name not in old_props or name not in old_req:
            problems.append(f"{where}.{name}: new required field (old producers do not send it)")
    return problems


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What in `new` breaks readers or writers of `old`, per message of the same major version."""
    problems: list[str] = []
    new_messages = new["components"]["messages"]
    for mid, old_msg in old["components"]["messages"].items():
        new_msg = new_messages.get(mid)
        if new_msg is None:
            problems.append(f"{mid}: removed (publish a new major version next to it instead)")
            continue
        old_topic = next((c["address"] for c in old["channels"].values() if mid in c["messages"]), None)
        new_topic = next((c["address"] for c in new["channels"].values() if mid in c["messages"]), None)
        if old_topic != new_topic:
            problems.append(f"{mid}: moved from topic {old_topic} to {new_topic}")
        if old_msg.get("x-darkroom-key") != new_msg.get("x-darkroom-key"):
            problems.append(f"{mid}: Kafka key changed from {old_msg.get('x-darkroom-key')} to {new_msg.get('x-darkroom-key')}")
        old_h, new_h = old_msg["headers"], new_msg["headers"]
        for h in sorted(set(old_h.get("required", [])) - set(new_h.get("required", []))):
            problems.append(f"{mid}: header {h} no longer required")
        problems += _compare(old, _payload(old, old_msg), new, _payload(new, new_msg), f"{mid}.data")
    return problems


def load(path: Path) -> dict[str, Any]:
    """A committed AsyncAPI document (YAML or JSON)."""
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def _normalised(document: dict[str, Any]) -> Any:
    return json.loads(json.dumps(copy.deepcopy(document)))


@click.command("asyncapi")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Write the document here (default: print it).")
@click.option("--check", "check_against", type=click.Path(path_type=Path, exists=True), default=None,
              help="Fail if the current models break this committed document (same major versions).")
@click.pass_obj
def asyncapi_command(settings: Settings, output: Path | None, check_against: Path | None) -> None:
    """Write the AsyncAPI 3 document of every topic, event, key and header, generated from the models.

    Topic addresses carry DARKROOM_TOPICS__PREFIX (the committed docs/asyncapi.yaml has none).
    """
    document = generate(prefix=settings.topics.prefix)
    if check_against is not None:
        problems = breaking_changes(load(check_against), document)
        if problems:
            raise click.ClickException("breaking changes against " + str(check_against) + ":\n  " + "\n  ".join(problems))
        click.echo(f"compatible with {check_against}", err=True)
        if _normalised(load(check_against)) != _normalised(document):
            click.echo("(but it differs: regenerate it with `darkroom asyncapi -o " + str(check_against) + "`)", err=True)
    text = render(document)
    if output is None:
        if check_against is None:
            click.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    click.echo(f"wrote {output}", err=True)
