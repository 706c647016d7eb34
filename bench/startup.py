"""Start-up: short commands on an empty database against a bare interpreter's start.

Each command runs as a process of its own, on a migrated, empty SQLite file; the yardstick is
``python -c "import sqlite3"`` from the same interpreter. One warm-up round (which also
writes the bytecode caches, as an install does) is not counted; then every round runs each
command once, in forward order on even rounds and backward on odd ones, so a drift of the
machine's speed reaches all of them alike. The medians of wall time and their ratios to the
yardstick are printed, and beside them those of CPU time (user + system), which a busy
machine moves less.

``--against DIR`` also runs the commands of another checkout (an earlier commit: ``git
archive <commit> notifier | tar -x -C DIR``) in the same rounds, its package first on
``PYTHONPATH`` and everything else the same venv, so that before and after are measured
side by side rather than one after the other.

    python bench/startup.py --runs 21
    python bench/startup.py --runs 21 --against /tmp/before
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

PYTHON = Path(sys.executable)
NOTIFIER = PYTHON.parent / "notifier"
BASELINE = "bare python"
NOTIFIER_COMMANDS: dict[str, list[str]] = {
    "notifier --version": [str(NOTIFIER), "--version"],
    "notifier check": [str(NOTIFIER), "check"],
    "notifier tokens list": [str(NOTIFIER), "tokens", "list"],
}


def seconds(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of *command*, start to exit; it must exit 0."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise subprocess.CalledProcessError(process.returncode, command)
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    """Measure and print each command's median and its ratio to the bare interpreter."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="counted rounds (default 21)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--against", type=Path, help="a checkout whose commands run in the same rounds"
    )
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="notifier-startup-") as scratch:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": scratch,
            "NOTIFIER_DATABASE_URL": f"sqlite:///{Path(scratch) / 'empty.db'}",
        }
        commands = {BASELINE: ([str(PYTHON), "-c", "import sqlite3"], env)}
        commands.update({name: (command, env) for name, command in NOTIFIER_COMMANDS.items()})
        if options.against is not None:
            other = {**env, "PYTHONPATH": str(options.against.resolve())}
            commands.update(
                {
                    f"{name} ({options.against.name})": (command, other)
                    for name, command in NOTIFIER_COMMANDS.items()
                }
            )
        wall: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        subprocess.run([str(NOTIFIER), "db", "upgrade"], env=env, check=True, capture_output=True)
        for command, command_env in commands.values():  # warm-up: caches, bytecode
            seconds(command, command_env)
        for round_number in range(options.runs):
            names = list(commands)
            for name in names if round_number % 2 == 0 else reversed(names):
                wall_seconds, cpu_seconds = seconds(*commands[name])
                wall[name].append(wall_seconds)
                cpu[name].append(cpu_seconds)
    wall_ms = {name: 1000 * statistics.median(values) for name, values in wall.items()}
    cpu_ms = {name: 1000 * statistics.median(values) for name, values in cpu.items()}
    result = {
        "runs": options.runs,
        "median_ms": {name: round(value, 1) for name, value in wall_ms.items()},
        "ratio": {name: round(value / wall_ms[BASELINE], 1) for name, value in wall_ms.items()},
        "cpu_median_ms": {name: round(value, 1) for name, value in cpu_ms.items()},
        "cpu_ratio": {name: round(value / cpu_ms[BASELINE], 1) for name, value in cpu_ms.items()},
        "wall_seconds": wall,
        "cpu_seconds": cpu,
    }
    width = max(len(name) for name in commands)
    sys.stdout.write(f"{'':>{width}}  {'wall':>9}  {'ratio':>6}  {'cpu':>9}  {'ratio':>6}\n")
    for name in commands:
        sys.stdout.write(
            f"{name:>{width}}: {wall_ms[name]:6.1f} ms  {result['ratio'][name]:5.1f}x"
            f"  {cpu_ms[name]:6.1f} ms  {result['cpu_ratio'][name]:5.1f}x\n"
        )
    if options.json is not None:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
