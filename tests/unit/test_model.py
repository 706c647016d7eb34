"""The domain types' own rules: the state kinds a row stores, and what each notice leaves."""

from __future__ import annotations

import pytest

from notifier.core.model import OPEN, DeliveryState, NoticeKind, StateKind


@pytest.mark.parametrize("kind", list(NoticeKind))
def test_a_notice_leaves_the_state_of_its_own_kind(kind: NoticeKind) -> None:
    """The state after a notice is named as the notice is: the row's text stays the same."""
    assert StateKind.told(kind).value == kind.value


@pytest.mark.parametrize("kind", list(StateKind))
def test_every_stored_kind_reads_back(kind: StateKind) -> None:
    assert StateKind.stored(kind.value) is kind


def test_an_unknown_or_missing_stored_kind_counts_as_never_told() -> None:
    """A later version's kind, or none, reads as None: not an open loop, not a crash."""
    assert StateKind.stored(None) is None
    assert StateKind.stored("snoozed-by-a-later-version") is None
    assert not DeliveryState(expires_at=None, last_kind=StateKind.stored("other")).is_open


def test_only_an_expiring_notice_opens_a_loop() -> None:
    opened = [
        kind for kind in NoticeKind if DeliveryState(None, last_kind=StateKind.told(kind)).is_open
    ]
    assert opened == [NoticeKind.EXPIRING]
    assert OPEN is StateKind.EXPIRING
