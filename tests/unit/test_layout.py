"""The layout table of docs/ARCHITECTURE.md holds: each folder imports only what its row allows.

The table is parsed from the page itself, so the page and the tree cannot drift apart silently:
a new import across a boundary fails here, and so does a row naming a folder that is gone.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "ARCHITECTURE.md"
PROJECT_PACKAGES = ("pipeline", "storage", "stages", "orchestration", "operations", "bench", "web")


def _rows() -> dict[str, str]:
    """Folder (as written in the first column) -> the 'may import' column, from the layout table."""
    text = PAGE.read_text()
    table = text.split("## Layout", 1)[1].split("\n\n", 2)[1]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for folder in re.findall(r"`([a-z_/.]+)`", cells[0]):
            rows[folder.rstrip("/")] = cells[2]
    return rows


def _imports(path: Path) -> set[str]:
    """Dotted project modules imported by one file (absolute imports only: the code uses no others)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.split(".")[0] in PROJECT_PACKAGES}


def _allowed(cell: str) -> list[str]:
    """Module prefixes a 'may import' cell names (`pipeline/` core, `stages/*`, …)."""
    prefixes = []
    for folder in re.findall(r"`([a-z_/.*]+)`", cell):
        prefixes.append(folder.rstrip("/").replace("/*", "").replace("/", ".").removesuffix(".py"))
    return prefixes


def _owner(module_path: Path, rows: dict[str, str]) -> str | None:
    """The most specific row of the table that a file belongs to."""
    rel = module_path.relative_to(REPO).as_posix()
    matches = [f for f in rows if rel == f or rel.startswith(f + "/")]
    return max(matches, key=len) if matches else None


def test_every_folder_of_the_table_exists() -> None:
    for folder in _rows():
        assert (REPO / folder).exists(), f"docs/ARCHITECTURE.md names {folder}, which is not in the tree"


def test_every_python_package_has_a_row() -> None:
    rows = _rows()
    for package in sorted(p.parent for p in REPO.glob("*/**/__init__.py") if ".venv" not in p.parts):
        top = package.relative_to(REPO).parts[0]
        if top in ("tests", "tools", "node_modules") or top.startswith("."):
            continue  # hidden folders are not the project's: .darkroom holds data (and the bench's thumbor venv)
        assert _owner(package / "__init__.py", rows), f"{package.relative_to(REPO)} has no row in the layout table"


@pytest.mark.parametrize("folder", sorted(f for f, cell in _rows().items() if "everything" not in cell and cell != "—"))
def test_folder_imports_only_what_its_row_allows(folder: str) -> None:
    rows = _rows()
    cell = rows[folder]
    own = folder.replace("/", ".").removesuffix(".py")
    allowed = [own, *_allowed(cell)]
    core_only = "not `pipeline/contracts/`" in cell
    files = [REPO / folder] if folder.endswith(".py") else sorted((REPO / folder).rglob("*.py"))
    wrong = []
    for path in files:
        if _owner(path, rows) != folder:
            continue  # a more specific row owns it
        for module in _imports(path):
            if core_only and module.startswith("pipeline.contracts"):
                wrong.append(f"{path.relative_to(REPO)} imports {module}")
            elif not any(module == p or module.startswith(p + ".") for p in allowed):
                wrong.append(f"{path.relative_to(REPO)} imports {module}")
    assert not wrong, f"{folder} may import {allowed}:\n" + "\n".join(wrong)
