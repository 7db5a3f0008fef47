"""A connector package imports the model, security and the connectors' shared helpers, never more.

DESIGN.md: a connector never touches store, api, web, flows, the engine's internals or another connector.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import crossdock.connectors

CONNECTORS = Path(crossdock.connectors.__file__).parent
PACKAGES = sorted(p.name for p in CONNECTORS.iterdir() if p.is_dir() and (p / "__init__.py").exists())
FORBIDDEN = (
    "crossdock.store",
    "crossdock.api",
    "crossdock.web",
    "crossdock.flows",
    "crossdock.hub",
    "crossdock.sandbox",
)
# The engine's HTTP client (with its errors and the rate policies a connector declares for its remote) is
# the one part of the engine a connector may use (DESIGN.md, Architecture).
ENGINE_ALLOWED = ("crossdock.engine.http", "crossdock.engine.errors", "crossdock.engine.ratelimit")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_connector_imports_stay_inside_its_boundary(package: str) -> None:
    others = [f"crossdock.connectors.{other}" for other in PACKAGES if other != package]
    for module in (CONNECTORS / package).rglob("*.py"):
        for name in imported_modules(module):
            assert not name.startswith(FORBIDDEN), f"{module.name} imports {name}"
            assert not any(name == o or name.startswith(o + ".") for o in others), (
                f"{module.name} imports {name}"
            )
            if name.startswith("crossdock.engine"):
                assert name.startswith(ENGINE_ALLOWED), f"{module.name} imports engine internals {name}"


def test_the_channel_packages_exist() -> None:
    assert {"shopify", "ebay", "amazon"} <= set(PACKAGES)
