"""A small kustomize for the tests: renders deploy/k8s overlays offline, with the subset of features they use.

Supported: `resources` (files and directories with a kustomization.yaml), `namespace`, `labels`
(pairs, added to metadata only, like kustomize's default `includeSelectors: false`), `images`
(newName/newTag on every container whose image has that name), and `patches` with a `target`
(kind/name) whose patch is a JSON 6902 list (replace/add/remove) or a strategic-merge object (maps
merged, lists of named items merged by `name`, other lists replaced). Anything else in a
kustomization.yaml is an error, so a file can never use a feature this renderer silently ignores.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

KNOWN = {"apiVersion", "kind", "namespace", "labels", "resources", "images", "patches"}
# Cluster-scoped kinds get no namespace.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass"}


def render(folder: Path) -> list[dict[str, Any]]:
    """Every object of the kustomization in `folder`, as `kubectl kustomize` would print it (for our subset)."""
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(spec) - KNOWN
    if unknown:
        raise ValueError(f"{folder}: kustomization fields this renderer does not know: {sorted(unknown)}")
    docs: list[dict[str, Any]] = []
    for resource in spec.get("resources", []):
        path = folder / resource
        if path.is_dir():
            docs += render(path)
        else:
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    for patch in spec.get("patches", []):
        body = yaml.safe_load(patch["patch"]) if "patch" in patch else yaml.safe_load((folder / patch["path"]).read_text())
        target = patch.get("target") or {"kind": body["kind"], "name": body["metadata"]["name"]}
        matched = [d for d in docs if _matches(d, target)]
        if not matched:
            raise ValueError(f"{folder}: patch target {target} matches nothing")
        for doc in matched:
            if isinstance(body, list):
                _json6902(doc, body)
            else:
                _merge(doc, body)
    for label in spec.get("labels", []):
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
    if "namespace" in spec:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = spec["namespace"]
    for image in spec.get("images", []):
        for doc in docs:
            for container in _containers(doc):
                name = container["image"].split("@")[0].rsplit(":", 1)[0] if ":" in container["image"].split("/")[-1] \
                    else container["image"].split("@")[0]
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image['newTag']}" if "newTag" in image \
                        else image.get("newName", name)
    return docs


def _matches(doc: dict[str, Any], target: dict[str, str]) -> bool:
    return all(doc.get("kind") == v if k == "kind" else doc["metadata"].get("name") == v if k == "name" else False
               for k, v in target.items())


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    if doc.get("kind") == "CronJob":
        pod = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return [*pod.get("containers", []), *pod.get("initContainers", [])]


def _merge(into: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        have = into.get(key)
        if isinstance(have, dict) and isinstance(value, dict):
            _merge(have, value)
        elif isinstance(have, list) and isinstance(value, list) and all(isinstance(v, dict) and "name" in v for v in value):
            by_name = {item.get("name"): item for item in have if isinstance(item, dict)}
            for item in value:
                if item["name"] in by_name:
                    _merge(by_name[item["name"]], item)
                else:
                    have.append(copy.deepcopy(item))
        else:
            into[key] = copy.deepcopy(value)


def _json6902(doc: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) and last != "-" else last
        if op["op"] == "replace":
            if (isinstance(node, dict) and key not in node) or (isinstance(node, list) and key >= len(node)):
                raise ValueError(f"replace of a missing path {op['path']}")
            node[key] = copy.deepcopy(op["value"])
        elif op["op"] == "add":
            if isinstance(node, list):
                node.append(copy.deepcopy(op["value"])) if key == "-" else node.insert(key, copy.deepcopy(op["value"]))
            else:
                node[key] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            del node[key]
        else:
            raise ValueError(f"JSON patch op {op['op']!r} is not supported here")
