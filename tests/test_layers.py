"""The import rule of DESIGN.md: services/*, nodeagent/ and cli/ import bus, never each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOP_LEVEL = ("bus", "services", "nodeagent", "cli")


def layer_of(path: Path) -> str:
    parts = path.relative_to(REPO).parts
    return f"services.{parts[1]}" if parts[0] == "services" and len(parts) > 2 else parts[0]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def layer_of_module(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] not in TOP_LEVEL:
        return None
    return f"services.{parts[1]}" if parts[0] == "services" and len(parts) > 1 else parts[0]


SOURCES = sorted(p for top in TOP_LEVEL for p in (REPO / top).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_module_imports_only_bus_and_its_own_layer(path: Path) -> None:
    own = layer_of(path)
    for module in imported_modules(path):
        target = layer_of_module(module)
        if target is None or target == own or target == "bus":
            continue
        if own == "services" and target.startswith("services."):
            continue  # services/__init__.py itself
        pytest.fail(f"{path.relative_to(REPO)} imports {module}: {own} may import only bus")


def test_bus_imports_no_other_layer() -> None:
    for path in (REPO / "bus").rglob("*.py"):
        for module in imported_modules(path):
            assert layer_of_module(module) in (None, "bus"), f"{path} imports {module}"


def test_the_rule_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from services.api.server import run\nimport cli.main\n")
    assert {layer_of_module(m) for m in imported_modules(bad)} == {"services.api", "cli"}
