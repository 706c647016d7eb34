"""Leases left by a process of this host that has gone are taken over at once; others wait.

A lease names its process (``notifier.delivery.checker.lease_owner``). The holders here are real
processes: a Python child that takes a lease in its own pass and then dies without releasing
it (``os._exit``, as a SIGKILL or an OOM kill leaves things), or one that keeps running.
The database is real, SQLite and PostgreSQL.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL
from structlog.testing import capture_logs

from notifier.core.clock import FixedClock
from notifier.core.model import Notice
from notifier.db.database import Database
from notifier.db.models import DeliveryStateRow
from notifier.delivery.checker import Checker
from notifier.delivery.leases import holder_gone, lease_owner
from notifier.sinks import EVERYTHING, MESSAGE_KINDS, Outcome
from notifier.testing import make_policy
from notifier.tokens.lifecycle import TokenStore

DAY = timedelta(days=1)
POLICY = make_policy()
_state = DeliveryStateRow.__table__

# A process that runs one pass whose sink never returns: it says its lease owner, holds the
# claim, and then dies on "die" without releasing it, or lives on until its stdin closes.
HOLDER = textwrap.dedent(
    """
    import os, sys, threading
    from datetime import UTC, datetime, timedelta
    from sqlalchemy.engine import make_url
    from notifier.delivery.checker import Checker
    from notifier.core.clock import FixedClock
    from notifier.db.database import Database
    from notifier.core.policy import Policy
    from notifier.sinks import EVERYTHING, MESSAGE_KINDS

    class Hangs:
        name, kinds, route = "hook", MESSAGE_KINDS, EVERYTHING
        digest = sys.argv[3] == "digest"  # a digest sink also holds the sink's lease
        def deliver(self, notices):
            print("claimed", flush=True)
            if sys.stdin.readline().strip() == "die":
                os._exit(9)
            threading.Event().wait()
        def close(self):
            pass

    day = timedelta(days=1)
    policy = Policy(detection_window=timedelta(hours=168), backoff_interval=day,
                    pass_interval=timedelta(hours=1), log_slice=day)
    checker = Checker(database=Database(make_url(sys.argv[1])), sinks=[Hangs()],
                      policy=policy, clock=FixedClock(datetime.fromisoformat(sys.argv[2])),
                      lease=timedelta(minutes=10))
    print(checker.owner, flush=True)
    checker.run()
    """
)


class Receiver:
    """Remembers what it was handed."""

    name = "hook"
    kinds = MESSAGE_KINDS
    route = EVERYTHING

    def __init__(self, *, digest: bool = False) -> None:
        self.digest = digest
        self.received: list[str] = []

    def deliver(self, notices: Sequence[Notice]) -> list[Outcome]:
        self.received.extend(notice.token_id for notice in notices)
        return [Outcome.sent()] * len(notices)

    def close(self) -> None:
        pass


class Holder:
    """A child process that has claimed every due token for the sink ``hook``."""

    def __init__(self, url: URL, clock: FixedClock, *, digest: bool = False) -> None:
        database = url.render_as_string(hide_password=False)
        kind = "digest" if digest else "each"
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, database, clock.now().isoformat(), kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.owner = self.process.stdout.readline().strip()
        assert self.process.stdout.readline().strip() == "claimed", "the holder never claimed"

    def die(self) -> None:
        """Exit at once, leases held, as a SIGKILL leaves them."""
        assert self.process.stdin is not None
        self.process.stdin.write("die\n")
        self.process.stdin.flush()
        assert self.process.wait(timeout=20) == 9

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def holder(database_url: URL, database: Database, clock: FixedClock) -> Iterator[Holder]:
    """A token due for ``hook``, claimed by a live child process."""
    TokenStore(database, clock, POLICY, prefix="ntf_", pepper=None).create(
        name="t", expires_at=clock.now() + DAY
    )
    running = Holder(database_url, clock)
    yield running
    running.close()


def checker(database: Database, clock: FixedClock, sink: Receiver) -> Checker:
    return Checker(
        database=database, sinks=[sink], policy=POLICY, clock=clock, lease=timedelta(minutes=10)
    )


def lease_of(database: Database) -> str | None:
    with database.read() as connection:
        owner: str | None = connection.execute(select(_state.c.lease_owner)).scalar_one()
    return owner


class TestTakeOver:
    def test_a_live_holder_keeps_its_claim(
        self, holder: Holder, database: Database, clock: FixedClock
    ) -> None:
        """While the holder runs, its claim is claimed elsewhere, even on the same host."""
        sink = Receiver()
        report = checker(database, clock, sink).run()
        assert (report.claimed_elsewhere, sink.received) == (1, [])
        assert lease_of(database) == holder.owner

    def test_a_dead_holders_claim_is_taken_at_once(
        self, holder: Holder, database: Database, clock: FixedClock
    ) -> None:
        """Once the holder died with its lease, the next pass of this host takes and sends it."""
        holder.die()
        sink = Receiver()
        with capture_logs() as events:
            report = checker(database, clock, sink).run()
        assert (report.claimed_elsewhere, report.sent, len(sink.received)) == (0, {"hook": 1}, 1)
        (taken,) = [e for e in events if e["event"] == "check.taken_over"]
        assert (taken["claims"], taken["previous"]) == (1, holder.owner)
        assert lease_of(database) is None  # sent and recorded

    def test_a_dead_digest_holders_sink_lease_is_taken_at_once(
        self, database_url: URL, database: Database, clock: FixedClock
    ) -> None:
        """A digest sink's lease (one replica per pass) left by a dead holder does not wait."""
        TokenStore(database, clock, POLICY, prefix="ntf_", pepper=None).create(
            name="t", expires_at=clock.now() + DAY
        )
        digest = Holder(database_url, clock, digest=True)
        try:
            sink = Receiver(digest=True)
            assert checker(database, clock, sink).run().sent == {}  # the holder runs the sink
            digest.die()
            report = checker(database, clock, sink).run()
        finally:
            digest.close()
        assert (report.sent, report.claimed_elsewhere, len(sink.received)) == ({"hook": 1}, 0, 1)

    def test_this_process_is_never_gone(self) -> None:
        """Another checker of this very process holds a live lease, not a left one."""
        assert not holder_gone(lease_owner())

    @pytest.mark.parametrize(
        "rewrite",
        [
            lambda owner: "elsewhere.example" + owner[owner.index(":") :],  # another host
            lambda owner: owner.rsplit(":", 2)[0],  # an older version's host:pid:nonce
            lambda owner: owner.rsplit(":", 2)[0] + ":-:-",  # a process that saw no /proc
        ],
    )
    def test_only_a_holder_this_host_can_judge_is_gone(
        self, holder: Holder, rewrite: Callable[[str], str]
    ) -> None:
        """A dead pid of another host, or an owner without the process's place, still holds."""
        holder.die()
        assert holder_gone(holder.owner)
        assert not holder_gone(rewrite(holder.owner))
