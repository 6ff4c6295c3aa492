"""Every third-party module the code imports comes from a distribution pyproject.toml declares.

Runtime packages must declare it in `dependencies`; tests and bench may also use the `test` and
`bench` extras. A module that only arrives as another package's dependency breaks the day that
package drops it.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
import tomllib
from functools import cache
from importlib.metadata import distribution, packages_distributions
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OWN = {"pipeline", "storage", "stages", "orchestration", "operations", "web", "bench", "tests"}
RUNTIME = ("pipeline", "storage", "stages", "orchestration", "operations", "web")


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


@cache
def _declared() -> dict[str, set[str]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    runtime = _names(project["dependencies"])
    return {"runtime": runtime, "test": runtime | _names(extras["test"]), "bench": runtime | _names(extras["bench"])}


@cache
def _top_level() -> dict[str, list[str]]:
    return packages_distributions()


def _distribution(module: str) -> str | None:
    """The distribution that installed `module`; for a namespace package (opentelemetry), the one owning its file."""
    candidates = [d.lower().replace("_", "-") for d in _top_level().get(module.split(".")[0], [])]
    if len(set(candidates)) <= 1:
        return candidates[0] if candidates else None
    origin = None
    parts = module.split(".")
    for depth in range(len(parts), 1, -1):
        try:
            spec = importlib.util.find_spec(".".join(parts[:depth]))
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.origin:
            origin = Path(spec.origin).resolve()
            break
    for name in set(candidates):
        dist = distribution(name)
        if origin is not None and any(Path(dist.locate_file(f)).resolve() == origin for f in dist.files or []):
            return name
    return None


def _imports(folder: str) -> set[str]:
    found = set()
    for path in (REPO / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module)
    return {m for m in found if m.split(".")[0] not in sys.stdlib_module_names and m.split(".")[0] not in OWN}


@pytest.mark.parametrize("folder", [*RUNTIME, "tests", "bench"])
def test_every_import_is_declared(folder: str) -> None:
    allowed = _declared()["runtime" if folder in RUNTIME else folder if folder == "bench" else "test"]
    undeclared = {}
    for module in sorted(_imports(folder)):
        dist = _distribution(module)
        if dist is not None and dist not in allowed:
            undeclared[module] = dist
    assert not undeclared, f"{folder}/ imports modules of undeclared distributions: {undeclared}"
