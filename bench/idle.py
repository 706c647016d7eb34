"""Idle daemon: RSS and CPU of ``notifier run`` over a minute with nothing to do.

The daemon runs on a SQLite file with 1,000 tokens far from expiry, the HTTP listener on,
the default 1h interval (so one pass at start), and the 5s heartbeat. After its first pass,
/proc/<pid> is sampled every second for --seconds: resident memory, and CPU time (user +
system) as a share of one core.

    python bench/idle.py --seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

NOTIFIER = Path(sys.executable).parent / "notifier"
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of *pid*."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    """Resident memory of *pid*, in MiB."""
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * PAGE / 2**20


def main() -> None:
    """Start the daemon, wait for its first pass, sample, stop it, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="notifier-idle-") as scratch:
        base = Path(scratch)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": scratch,
            "NOTIFIER_DATABASE_URL": f"sqlite:///{base / 'idle.db'}",
            "NOTIFIER_HTTP_ADDRESS": "127.0.0.1:0",
        }
        far = datetime.now(UTC) + timedelta(days=200)
        lines = [
            json.dumps({"id": f"t{index:05d}", "name": f"t{index}", "expires_at": far.isoformat()})
            for index in range(1000)
        ]
        (base / "tokens.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        subprocess.run(
            [str(NOTIFIER), "tokens", "import", str(base / "tokens.jsonl")],
            env=env,
            check=True,
            capture_output=True,
        )
        log = (base / "daemon.log").open("wb")
        daemon = subprocess.Popen([str(NOTIFIER), "run"], env=env, stderr=log)
        while b"check.completed" not in (base / "daemon.log").read_bytes():
            time.sleep(0.1)
        time.sleep(1)
        start_cpu, start = cpu_seconds(daemon.pid), time.monotonic()
        samples = []
        for _ in range(options.seconds):
            time.sleep(1)
            samples.append(rss_mb(daemon.pid))
        cpu = cpu_seconds(daemon.pid) - start_cpu
        elapsed = time.monotonic() - start
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=30)
        log.close()
    result = {
        "seconds": round(elapsed, 1),
        "rss_mb_median": round(statistics.median(samples), 1),
        "rss_mb_max": round(max(samples), 1),
        "cpu_seconds": round(cpu, 3),
        "cpu_percent_of_one_core": round(100 * cpu / elapsed, 2),
        "exit_code": code,
    }
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    if options.json is not None:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
