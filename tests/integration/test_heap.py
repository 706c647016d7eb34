"""Start-up's objects are frozen out of the collector's way before the first pass."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import pytest

from notifier import cli
from notifier.config.settings import load_settings
from notifier.runtime import heap
from notifier.runtime.compose import build_serve
from notifier.runtime.service import Shell
from notifier.web.app import Probe


class _Role:
    """A role that notes how many objects were frozen when it started, then asks to stop."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self.frozen_at_start: int | None = None

    def liveness(self) -> Probe:
        return Probe(ok=True)

    def start(self) -> None:
        self.frozen_at_start = gc.get_freeze_count()
        self._stop.set()

    def stop(self, signum: int | None) -> bool:
        del signum
        return True

    def stopped(self) -> None:
        """Nothing to say."""


def test_settle_freezes_what_survives_a_collection() -> None:
    """Every object that outlived the collection is frozen, and a count of them returned."""
    gc.unfreeze()
    kept = [[index] for index in range(1000)]  # lists: objects the collector tracks
    frozen = heap.settle()
    assert frozen == gc.get_freeze_count()
    assert frozen >= len(kept)
    assert gc.is_tracked(kept[0])


def test_a_service_settles_before_its_role_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`notifier run` and `serve` freeze start-up's objects before their first pass."""
    monkeypatch.setenv("NOTIFIER_DATABASE_URL", f"sqlite:///{tmp_path / 'notifier.db'}")
    monkeypatch.setenv("NOTIFIER_HTTP_ADDRESS", "off")
    gc.unfreeze()
    service = build_serve(load_settings())
    role = _Role(service.stop)
    assert Shell(service, role).run() == 0
    assert role.frozen_at_start is not None
    assert role.frozen_at_start > 0


def test_notifier_check_settles(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A one-off `notifier check` freezes start-up's objects too (it has one pass)."""
    monkeypatch.setenv("NOTIFIER_DATABASE_URL", f"sqlite:///{tmp_path / 'notifier.db'}")
    gc.unfreeze()
    assert cli.main(["check"]) == 0
    assert gc.get_freeze_count() > 0
