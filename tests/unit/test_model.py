"""The domain types' own rules: the state kinds a row stores, and what each notice leaves."""

from __future__ import annotations

from pathlib import Path

import mypy.api
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


class TestValueTypes:
    """The per-notice types are built with plain assignments but are frozen to mypy."""

    def test_mypy_refuses_an_assignment_to_a_field(self, tmp_path: Path) -> None:
        """The type checker reports `state.notices_sent = 3`, as on a frozen dataclass."""
        snippet = tmp_path / "assign.py"
        snippet.write_text(
            "from notifier.core.model import DeliveryState\n"
            "from notifier.delivery.ledger.codec import Candidate\n"
            "state = DeliveryState(expires_at=None)\n"
            "state.notices_sent = 3\n"
            "candidate = Candidate('id', None, None)\n"
            "candidate.version = 2\n",
            encoding="utf-8",
        )
        report, _, status = mypy.api.run(
            ["--strict", "--cache-dir", str(tmp_path / "cache"), str(snippet)]
        )
        assert status == 1, report
        assert 'assign.py:4: error: Property "notices_sent" defined in "DeliveryState"' in report
        assert 'assign.py:6: error: Property "version" defined in "Candidate"' in report

    def test_equal_values_hash_alike(self) -> None:
        """Two states of the same fields are equal and hash the same, as frozen ones did."""
        first = DeliveryState(expires_at=None, notices_sent=2, last_kind=OPEN)
        second = DeliveryState(expires_at=None, notices_sent=2, last_kind=OPEN)
        assert first == second
        assert hash(first) == hash(second)
        assert first != DeliveryState(expires_at=None, notices_sent=3, last_kind=OPEN)

    def test_no_attribute_outside_the_fields(self) -> None:
        """Slotted: a misspelt field is an error, not a new attribute."""
        state = DeliveryState(expires_at=None)
        with pytest.raises(AttributeError):
            state.notice_sent = 3  # type: ignore[attr-defined]
