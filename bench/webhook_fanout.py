"""Webhook fan-out: notices per second through the pass, against a bare httpx loop.

A loopback receiver runs in a process of its own (a minimal asyncio HTTP/1.1 server that
answers 204 and counts, so that it is not the limit). Two receivers, two cases:

- **instant**: it answers at once. Each repeat times
  - **bare**: one ``httpx.Client`` POSTing the same JSON bodies with the same headers in a
    loop, one at a time: the limit of one sequential sender;
  - **sink**: :class:`~notifier.sinks.webhook.WebhookSink` delivering the same notices
    (payload, signature, retries, up to ``concurrency`` at once);
  - **pass**: a whole ``Checker`` pass with the webhook sink over k tokens in the window on
    SQLite (due query, claims, records, the pass's chunks included): what an operator gets.
- **latency**: it answers each request ``--latency-ms`` after it arrived (``call_later`` in
  its protocol, so other connections go on meanwhile): a receiver across a network. The same
  three, with the bare loop over fewer notices (it manages 1 / latency a second).

Each case's repeats alternate the order of its three runs; rates are medians. ``--concurrency``
sets the sink's option (its default otherwise); 1 is the sequential sink of before #13. Each
run also records the CPU time this process spent per notice (every thread; the receiver's
process is not counted), medians in ``cpu_us_per_notice``: against the instant receiver that,
not the network, is what bounds the rate.

    python bench/webhook_fanout.py --notices 5000 --latency-notices 1000 --repeat 5 \
        --json bench/results/fanout-concurrency.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
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

LATENCY = float(sys.argv[1])
ANSWER = b"HTTP/1.1 204 No Content\\r\\ncontent-length: 0\\r\\n\\r\\n"

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
            if LATENCY:
                asyncio.get_running_loop().call_later(LATENCY, self.answer)
            else:
                self.answer()

    def answer(self):
        if not self.transport.is_closing():
            self.transport.write(ANSWER)

async def main():
    server = await asyncio.get_running_loop().create_server(Answer, "127.0.0.1", 0, backlog=512)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    print(Answer.count, flush=True)

asyncio.run(main())
"""

NOW = datetime.now(UTC).replace(microsecond=0)


def start_receiver(latency: float = 0.0) -> tuple[subprocess.Popen[str], str]:
    """The receiver process, answering *latency* seconds after each request, and its URL."""
    process = subprocess.Popen(
        [sys.executable, "-c", RECEIVER_CODE, str(latency)],
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


def sink(url: str, concurrency: int | None) -> Any:
    """The webhook sink as the registry builds it, signing with a secret."""
    from notifier.core.clock import SystemClock  # noqa: PLC0415
    from notifier.sinks import EVERYTHING  # noqa: PLC0415
    from notifier.sinks.registry import Retry  # noqa: PLC0415
    from notifier.sinks.retrying import DEFAULT_CONCURRENCY  # noqa: PLC0415
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
        concurrency=concurrency or DEFAULT_CONCURRENCY,
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


def through_sink(url: str, batch: list[Any], concurrency: int | None) -> float:
    """The webhook sink delivering the batch, 500 at a time as the pass hands it over."""
    webhook = sink(url, concurrency)
    started = time.perf_counter()
    for start in range(0, len(batch), 500):
        outcomes = webhook.deliver(batch[start : start + 500])
        assert all(outcome.ok for outcome in outcomes)  # noqa: S101
    elapsed = time.perf_counter() - started
    webhook.close()
    return elapsed


def through_pass(url: str, count: int, scratch: Path, concurrency: int | None) -> float:
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
        sinks=[sink(url, concurrency)],
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


def cpu_seconds() -> float:
    """CPU time of this process so far, every thread, user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(
    latency: float, notices_each: dict[str, int], repeat: int, concurrency: int | None
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds and CPU seconds per run of each of bare, sink and pass, alternating the order."""
    batches = {name: notices(count) for name, count in notices_each.items()}
    runs = {
        "bare": lambda url, _scratch: bare(url, batches["bare"]),
        "sink": lambda url, _scratch: through_sink(url, batches["sink"], concurrency),
        "pass": lambda url, scratch: through_pass(url, notices_each["pass"], scratch, concurrency),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for index in range(repeat):
        order = list(runs) if index % 2 == 0 else list(reversed(runs))
        receiver, url = start_receiver(latency)
        for name in order:
            with tempfile.TemporaryDirectory() as scratch:
                before = cpu_seconds()
                seconds[name].append(runs[name](url, Path(scratch)))
                cpu[name].append(cpu_seconds() - before)
        answered = stop_receiver(receiver)
        assert answered == sum(notices_each.values()), answered  # noqa: S101
    return seconds, cpu


def summary(
    seconds: dict[str, list[float]], cpu: dict[str, list[float]], notices_each: dict[str, int]
) -> dict[str, Any]:
    """Notices per second and CPU per notice (medians), and the ratios against the bare loop."""
    rate = {name: notices_each[name] / statistics.median(runs) for name, runs in seconds.items()}
    return {
        "notices": notices_each,
        "per_second": {name: round(value) for name, value in rate.items()},
        "sink_vs_bare": round(rate["sink"] / rate["bare"], 2),
        "pass_vs_bare": round(rate["pass"] / rate["bare"], 2),
        "cpu_us_per_notice": {
            name: round(statistics.median(runs) / notices_each[name] * 1e6)
            for name, runs in cpu.items()
        },
        "seconds": seconds,
    }


def main() -> None:
    """Measure both cases, and print notices per second and the ratios."""
    from notifier.sinks.retrying import DEFAULT_CONCURRENCY  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notices", type=int, default=5000, help="instant case")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="0: no latency case")
    parser.add_argument("--latency-notices", type=int, default=1000)
    parser.add_argument("--latency-bare-notices", type=int, default=100)
    parser.add_argument("--concurrency", type=int, help="the sink's option; default: its default")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, help="a JSONL file to append the result to")
    options = parser.parse_args()
    cases = {"instant": (0.0, dict.fromkeys(("bare", "sink", "pass"), options.notices))}
    if options.latency_ms:
        counts = {
            "bare": options.latency_bare_notices,
            "sink": options.latency_notices,
            "pass": options.latency_notices,
        }
        cases[f"latency_{options.latency_ms:g}ms"] = (options.latency_ms / 1000, counts)
    result: dict[str, Any] = {
        "repeat": options.repeat,
        "concurrency": options.concurrency or DEFAULT_CONCURRENCY,
        "cpus": os.cpu_count(),
        "load_before": round(os.getloadavg()[0], 2),
    }
    for case, (latency, counts) in cases.items():
        result[case] = summary(
            *measure(latency, counts, options.repeat, options.concurrency), counts
        )
        shown = result[case]
        sys.stdout.write(f"{case} (concurrency {result['concurrency']}):\n")
        for name in ("bare", "sink", "pass"):
            sys.stdout.write(
                f"  {name:>5}: {shown['per_second'][name]:8d} notices/s"
                f"  {shown['cpu_us_per_notice'][name]:5d} us CPU each\n"
            )
        sys.stdout.write(
            f"  sink/bare {shown['sink_vs_bare']:.2f}x   pass/bare {shown['pass_vs_bare']:.2f}x\n"
        )
    result["load_after"] = round(os.getloadavg()[0], 2)
    if options.json is not None:  # one line per run, appended
        options.json.parent.mkdir(parents=True, exist_ok=True)
        with options.json.open("a", encoding="utf-8") as lines:
            lines.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
