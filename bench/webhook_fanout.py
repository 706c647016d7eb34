"""Webhook fan-out: notices per second through the pass, against a bare httpx loop.

A loopback receiver runs in a process of its own (a minimal asyncio HTTP/1.1 server that
answers 204 and counts, so that it is not the limit). Against it, each repeat times:

- **bare**: one ``httpx.Client`` POSTing the same JSON bodies with the same headers in a loop:
  the limit for one sender;
- **sink**: :class:`~notifier.sinks.webhook.WebhookSink` delivering the same notices
  (payload, signature, retry wrapper);
- **pass**: a whole ``Checker`` pass with the webhook sink over k tokens in the window on
  SQLite (due query, claims, records included): what an operator gets.

    python bench/webhook_fanout.py --notices 5000 --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

RECEIVER_CODE = """
import asyncio, sys

class Answer(asyncio.Protocol):
    count = 0

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""

    def data_received(self, data):
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\\r\\n\\r\\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].lower()
            start = head.find(b"content-length:")
            stop = head.find(b"\\r\\n", start)
            length = int(head[start + 15 : stop if stop >= 0 else None]) if start >= 0 else 0
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            self.buffer = self.buffer[end:]
            Answer.count += 1
            self.transport.write(b"HTTP/1.1 204 No Content\\r\\ncontent-length: 0\\r\\n\\r\\n")

async def main():
    server = await asyncio.get_running_loop().create_server(Answer, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    print(Answer.count, flush=True)

asyncio.run(main())
"""

NOW = datetime.now(UTC).replace(microsecond=0)


def start_receiver() -> tuple[subprocess.Popen[str], str]:
    """The receiver process and its URL."""
    process = subprocess.Popen(
        [sys.executable, "-c", RECEIVER_CODE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None  # noqa: S101
    port = int(process.stdout.readline())
    return process, f"http://127.0.0.1:{port}/hook"


def stop_receiver(process: subprocess.Popen[str]) -> int:
    """Stop the receiver; return how many requests it answered."""
    assert process.stdin is not None  # noqa: S101
    assert process.stdout is not None  # noqa: S101
    process.stdin.close()
    count = int(process.stdout.readline())
    process.wait(timeout=10)
    return count


def notices(count: int) -> list[Any]:
    """*count* expiring notices, as the policy builds them."""
    from notifier.core.model import Notice, NoticeKind  # noqa: PLC0415

    return [
        Notice(
            id=f"{index:032x}",
            kind=NoticeKind.EXPIRING,
            sink="webhook",
            source="store",
            token_id=f"tk{index:010d}",
            token_name=f"svc-{index}",
            owner="team@example.com",
            expires_at=NOW + timedelta(days=3, seconds=index),
            days_left=4,
            seconds_left=3 * 86400 + index,
            threshold=None,
        )
        for index in range(count)
    ]


def sink(url: str) -> Any:
    """The webhook sink as the registry builds it, signing with a secret."""
    from notifier.core.clock import SystemClock  # noqa: PLC0415
    from notifier.sinks import EVERYTHING  # noqa: PLC0415
    from notifier.sinks.registry import Retry  # noqa: PLC0415
    from notifier.sinks.webhook import WebhookSink  # noqa: PLC0415

    return WebhookSink(
        "webhook",
        url=url,
        secret="whsec_" + "Mi8JO7oq/kVHutsJmJIFB9PN4mfLBS9csiUzYNB3ODo=",
        timeout=timedelta(seconds=5),
        route=EVERYTHING,
        retry=Retry(),
        clock=SystemClock(),
        window=timedelta(hours=168),
        slice_name="day",
    )


def bare(url: str, batch: list[Any]) -> float:
    """The same POSTs (bodies and headers built beforehand) from a plain httpx loop."""
    import httpx  # noqa: PLC0415

    from notifier.sinks.payload import payload  # noqa: PLC0415

    requests = [
        (
            json.dumps(
                payload(notice, sent_at=NOW, window=timedelta(hours=168), slice_name="day"),
                separators=(",", ":"),
            ).encode(),
            {
                "content-type": "application/json",
                "webhook-id": notice.id,
                "webhook-timestamp": str(int(NOW.timestamp())),
            },
        )
        for notice in batch
    ]
    with httpx.Client() as client:
        started = time.perf_counter()
        for body, headers in requests:
            client.post(url, content=body, headers=headers).raise_for_status()
        return time.perf_counter() - started


def through_sink(url: str, batch: list[Any]) -> float:
    """The webhook sink delivering the batch, 500 at a time as the pass hands it over."""
    webhook = sink(url)
    started = time.perf_counter()
    for start in range(0, len(batch), 500):
        outcomes = webhook.deliver(batch[start : start + 500])
        assert all(outcome.ok for outcome in outcomes)  # noqa: S101
    elapsed = time.perf_counter() - started
    webhook.close()
    return elapsed


def through_pass(url: str, count: int, scratch: Path) -> float:
    """A first pass over *count* tokens in the window, webhook sink only, on SQLite."""
    from sqlalchemy.engine import URL  # noqa: PLC0415

    from notifier.core.clock import FixedClock  # noqa: PLC0415
    from notifier.core.policy import Policy  # noqa: PLC0415
    from notifier.db import migrate  # noqa: PLC0415
    from notifier.db.database import Database  # noqa: PLC0415
    from notifier.delivery.checker import Checker  # noqa: PLC0415
    from notifier.runtime import logs  # noqa: PLC0415
    from notifier.tokens.lifecycle import TokenStore  # noqa: PLC0415
    from notifier.tokens.transfer import ImportRecord  # noqa: PLC0415

    logs.configure(level="WARNING", stream=(scratch / "log.txt").open("a", encoding="utf-8"))
    database = Database(URL.create("sqlite+pysqlite", database=str(scratch / "fanout.db")))
    migrate.upgrade(database)
    clock = FixedClock(NOW)
    policy = Policy(
        detection_window=timedelta(hours=168),
        backoff_interval=timedelta(hours=24),
        pass_interval=timedelta(hours=1),
        log_slice=timedelta(days=1),
    )
    store = TokenStore(database, clock, policy, prefix="ntf_", pepper=None)
    store.import_records(
        [
            ImportRecord(
                line=index + 1,
                values={
                    "id": f"tk{index:010d}",
                    "name": f"svc-{index}",
                    "expires_at": NOW + timedelta(days=3, seconds=index),
                },
            )
            for index in range(count)
        ]
    )
    checker = Checker(
        database=database,
        sinks=[sink(url)],
        policy=policy,
        clock=clock,
        lease=timedelta(minutes=10),
    )
    started = time.perf_counter()
    report = checker.run()
    elapsed = time.perf_counter() - started
    assert sum(report.sent.values()) == count, report.fields()  # noqa: S101
    database.dispose()
    return elapsed


def main() -> None:
    """Measure, and print notices per second and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notices", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    batch = notices(options.notices)
    seconds: dict[str, list[float]] = {"bare": [], "sink": [], "pass": []}
    answered = 0
    for _ in range(options.repeat):
        receiver, url = start_receiver()
        seconds["bare"].append(bare(url, batch))
        seconds["sink"].append(through_sink(url, batch))
        with tempfile.TemporaryDirectory() as scratch:
            seconds["pass"].append(through_pass(url, options.notices, Path(scratch)))
        answered += stop_receiver(receiver)
    assert answered == 3 * options.repeat * options.notices, answered  # noqa: S101
    rate = {name: options.notices / statistics.median(values) for name, values in seconds.items()}
    result = {
        "notices": options.notices,
        "repeat": options.repeat,
        "per_second": {name: round(value) for name, value in rate.items()},
        "sink_vs_bare": round(rate["sink"] / rate["bare"], 2),
        "pass_vs_bare": round(rate["pass"] / rate["bare"], 2),
        "seconds": seconds,
    }
    for name in ("bare", "sink", "pass"):
        sys.stdout.write(f"{name:>5}: {rate[name]:8.0f} notices/s\n")
    sys.stdout.write(
        f"sink/bare {result['sink_vs_bare']:.2f}x   pass/bare {result['pass_vs_bare']:.2f}x\n"
    )
    if options.json is not None:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
