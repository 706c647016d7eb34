"""Sharing the work: one replica against several, on the same tokens and receiver.

N tokens enter the window at once; the receiver on 127.0.0.1 answers each POST after
--delay seconds (a remote receiver's latency). The time until every token has arrived is
measured with 1 replica (what a leader-elected design gives: one replica works, the others
wait) and with R replicas claiming side by side (the shipped design). Each replica is a
``notifier run`` process; the claims decide who sends what.

    python bench/sharing.py --tokens 3000 --delay 0.005 --replicas 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import faults
from faults import NOTIFIER, Receiver, add_tokens
from generate import create_postgresql_database, drop_postgresql_database

DATABASE = "notifier_sharing"  # its own: a fault run may be using notifier_faults
faults.DATABASE = DATABASE
faults.CONNINFO = faults.CONNINFO.replace("notifier_faults", DATABASE)


def deliver_all(tokens: int, replicas: int, delay: float) -> tuple[float, int, int]:
    """Seconds from start until all *tokens* arrived; POSTs; claims found held elsewhere.

    The clock starts when the replicas are started (together); process start-up is in it,
    the same for one replica as for several.
    """
    create_postgresql_database(DATABASE)
    receiver = Receiver(delay)
    with tempfile.TemporaryDirectory(prefix="notifier-sharing-") as scratch:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": scratch,
            "NOTIFIER_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{DATABASE}",
            "NOTIFIER_SINKS": "webhook",
            "NOTIFIER_WEBHOOK_URL": receiver.url,
            "NOTIFIER_INTERVAL": "1h",
            "NOTIFIER_HTTP_ADDRESS": "off",
        }
        subprocess.run([str(NOTIFIER), "db", "upgrade"], env=env, check=True, capture_output=True)
        add_tokens(0, tokens)
        logs = [Path(scratch) / f"replica{index}.log" for index in range(replicas)]
        started = time.monotonic()
        fleet = []
        for path in logs:
            with path.open("wb") as log:
                fleet.append(subprocess.Popen([str(NOTIFIER), "run"], env=env, stderr=log))
        while True:
            with receiver.lock:
                if len(receiver.by_token) >= tokens:
                    break
            time.sleep(0.01)
        elapsed = time.monotonic() - started
        for process in fleet:
            process.terminate()
            process.wait(timeout=30)
        elsewhere = 0
        for path in logs:
            for line in path.read_text(encoding="utf-8").splitlines():
                if "check.completed" in line:
                    elsewhere += int(line.split("claimed_elsewhere=")[1].split()[0])
    with receiver.lock:
        posts = sum(receiver.by_notice.values())
    receiver.server.shutdown()
    drop_postgresql_database(DATABASE)
    return elapsed, posts, elsewhere


def main() -> None:
    """Measure 1 and R replicas, print the times and the speed-up."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=3000)
    parser.add_argument("--delay", type=float, default=0.005)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    results = {}
    for count in (1, options.replicas):
        runs = [deliver_all(options.tokens, count, options.delay) for _ in range(options.repeat)]
        results[count] = {
            "seconds": statistics.median(run[0] for run in runs),
            "posts": max(run[1] for run in runs),
            "claimed_elsewhere": statistics.median(run[2] for run in runs),
        }
    speedup = results[1]["seconds"] / results[options.replicas]["seconds"]
    settings = {**vars(options), "json": str(options.json)}
    output = {"options": settings, "results": results, "speedup": round(speedup, 2)}
    sys.stdout.write(json.dumps(output, indent=2) + "\n")
    if options.json is not None:
        options.json.write_text(json.dumps(output, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
