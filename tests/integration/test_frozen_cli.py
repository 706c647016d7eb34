"""The CLI in-process with the wall clock frozen: exact lines, timestamps included.

freezegun stands at the edge here, where code we do not own (structlog's timestamper, the
system clock behind ``SystemClock``) reads the time; no scheduler or thread runs.
"""

from __future__ import annotations

import json

import pytest
from freezegun import freeze_time

# The CLI imports these lazily; import them before any clock is frozen, or pydantic would
# build its models around freezegun's FakeDatetime.
from notifier import cli


def test_warn_line_with_its_timestamp(capsys: pytest.CaptureFixture[str]) -> None:
    """A token created 3 days before expiry reads "less than 3 days" at the frozen instant."""
    with freeze_time("2026-11-23T09:00:00Z") as frozen:
        assert cli.main(["tokens", "create", "--name", "ci-deploy", "--ttl", "3d", "--json"]) == 0
        token = json.loads(capsys.readouterr().out)
        assert token["expires_at"] == "2026-11-26T09:00:00Z"
        frozen.tick(1)
        assert cli.main(["check"]) == 0
        err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        f"2026-11-23T09:00:01Z Warn: API Token ci-deploy (ID {token['id']}) "
        "will expire in less than 3 days."
    )
    assert err[1].startswith("2026-11-23T09:00:01Z INFO check.completed in_window=1 sent=2")


def test_exactly_two_days_reads_less_than_three(capsys: pytest.CaptureFixture[str]) -> None:
    """At exactly two days the line says 3, never the false "less than 2 days"."""
    with freeze_time("2026-11-23T09:00:00Z"):
        assert cli.main(["tokens", "create", "--name", "x", "--ttl", "48h"]) == 0
        assert cli.main(["check"]) == 0
    assert "will expire in less than 3 days." in capsys.readouterr().err


def test_last_hour_reads_one_day(capsys: pytest.CaptureFixture[str]) -> None:
    """Three hours before expiry the line says "less than 1 day", never "0 days"."""
    with freeze_time("2026-11-23T09:00:00Z") as frozen:
        assert cli.main(["tokens", "create", "--name", "x", "--ttl", "6d"]) == 0
        frozen.tick(6 * 86400 - 3 * 3600)
        assert cli.main(["check"]) == 0
    assert "will expire in less than 1 day." in capsys.readouterr().err


def test_backoff_across_days(capsys: pytest.CaptureFixture[str]) -> None:
    """Hourly checks for 48 hours warn once a day: X counts down 3, 2, 1."""
    with freeze_time("2026-11-23T09:00:00Z") as frozen:
        assert cli.main(["tokens", "create", "--name", "x", "--ttl", "71h"]) == 0
        for _ in range(49):  # at 0h, 1h, ... 48h
            assert cli.main(["check"]) == 0
            frozen.tick(3600)
    lines = [line for line in capsys.readouterr().err.splitlines() if "Warn:" in line]
    assert [line.rsplit("less than ", 1)[1] for line in lines] == ["3 days.", "2 days.", "1 day."]
