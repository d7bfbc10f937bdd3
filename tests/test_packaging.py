"""The dependencies pyproject.toml declares are the ones the code imports (issue: undeclared imports)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# distribution name -> top-level import name, where they differ
IMPORT_NAME = {"open_clip_torch": "open_clip", "pillow": "PIL", "scikit-image": "skimage"}
OPTIONAL_IMPORTS = {"click"}  # imported only when present (older Typer releases use it), never required


def _imports(folders) -> set[str]:
    found = set()
    for folder in folders:
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"sketchkit", "cli", "kernels", "conftest"}


def _declared(entries) -> set[str]:
    names = {re.split(r"[<>=!~;\[ ]", entry, maxsplit=1)[0].strip().lower() for entry in entries}
    return {IMPORT_NAME.get(n, n.replace("-", "_")) for n in names}


def test_library_declares_what_it_imports_and_imports_what_it_declares():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = _declared(project["dependencies"]) | _declared(project["optional-dependencies"]["triton"])
    imported = _imports(["sketchkit", "cli", "kernels"])
    assert imported - declared - OPTIONAL_IMPORTS == set(), "imported but not declared"
    assert declared - imported == set(), "declared but never imported"


def test_tests_declare_what_they_import():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = _declared(project["dependencies"]) | _declared(project["optional-dependencies"]["test"])
    test_modules = {p.stem for p in (REPO / "tests").glob("test_*.py")}  # tests reuse each other's helpers
    assert _imports(["tests"]) - declared - test_modules == set()


def test_every_package_folder_is_installed():
    """Each folder with an __init__.py ships in the wheel (pyproject's explicit package list)."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = {"sketchkit." + ".".join(p.parent.relative_to(REPO / "sketchkit").parts)
             for p in (REPO / "sketchkit").rglob("__init__.py")} | {"sketchkit.cli", "sketchkit.kernels"}
    found = {name.rstrip(".") for name in found}
    assert found == listed
