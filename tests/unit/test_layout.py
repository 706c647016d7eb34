"""The package's layout rules (docs/architecture.md), read from the source as text and AST.

- the delivery state is the ledger's: only ``notifier/delivery/ledger`` (and ``db/``, which
  defines it) imports its table;
- dialects stay in ``db/``: no module elsewhere asks which database it runs on;
- sources only list: ``notifier/sources`` imports nothing of the delivery state or sinks;
- the environment is read by pydantic-settings alone (config/secrets.py hands on its reading).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "notifier"
# What asking "which database is this?" looks like in SQLAlchemy.
_DIALECT_NAMES = {"dialect", "get_backend_name", "get_dialect", "get_driver_name"}


def modules(*, outside: tuple[str, ...]) -> list[Path]:
    """The package's modules, except those under the folders *outside*."""
    excluded = [PACKAGE / folder for folder in outside]
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if not any(path.is_relative_to(folder) for folder in excluded)
    ]


def imported_names(path: Path) -> set[str]:
    """Every ``module.name`` an ``import``/``from ... import`` of *path* brings in."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_layout_rules_see_the_whole_package() -> None:
    """A guard that reads nothing passes for nothing: it must find the ledger and db/."""
    everything = modules(outside=())
    assert PACKAGE / "delivery" / "ledger" / "writes.py" in everything
    assert PACKAGE / "db" / "database.py" in everything
    assert len(everything) > 50


@pytest.mark.parametrize(
    "path",
    modules(outside=("db", "delivery/ledger")),
    ids=lambda path: str(path.relative_to(PACKAGE)),
)
def test_only_the_ledger_imports_the_state_table(path: Path) -> None:
    assert "notifier.db.models.DeliveryStateRow" not in imported_names(path)


@pytest.mark.parametrize(
    "path", modules(outside=("db",)), ids=lambda path: str(path.relative_to(PACKAGE))
)
def test_no_dialect_branch_outside_db(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    asked = sorted(
        {
            node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr in _DIALECT_NAMES
        }
    )
    assert not asked, f"{path} asks {asked}: say what you want of db/ instead"


@pytest.mark.parametrize(
    "path", sorted((PACKAGE / "sources").glob("*.py")), ids=lambda path: path.name
)
def test_sources_know_nothing_of_sinks_or_state(path: Path) -> None:
    names = imported_names(path)
    assert not [n for n in names if n.startswith(("notifier.sinks", "notifier.delivery"))]
    assert "notifier.db.models.DeliveryStateRow" not in names


@pytest.mark.parametrize(
    "path", modules(outside=()), ids=lambda path: str(path.relative_to(PACKAGE))
)
def test_only_pydantic_settings_reads_the_environment(path: Path) -> None:
    """The settings' sources read it once per load; everything else asks config/secrets.py."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    reads = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "environb"}
    ]
    assert not reads, f"{path} reads the environment itself at lines {reads}"
