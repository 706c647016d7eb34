"""Plot bench/results/passes.jsonl: pass time against N (equal k) and against k (equal N).

    python bench/plot.py bench/results/passes.jsonl docs/performance.png

Needs matplotlib (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt  # after mpl.use(): the backend is chosen first

STYLES = {"sqlite": "tab:blue", "postgresql": "tab:orange"}


def load(path: Path) -> list[dict[str, Any]]:
    """The last result of each (backend, tokens, in_window)."""
    latest: dict[tuple[str, int, int], dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        result = json.loads(line)
        latest[result["backend"], result["tokens"], result["in_window"]] = result
    return list(latest.values())


def panel(axes: Any, results: list[dict[str, Any]], key: str, fixed: str, value: int) -> None:
    """One panel: pass time against *key*, for results whose *fixed* equals *value*."""
    for backend, colour in STYLES.items():
        rows = sorted(
            (r for r in results if r["backend"] == backend and r[fixed] == value),
            key=lambda r: r[key],
        )
        if not rows:
            continue
        xs = [r[key] for r in rows]
        for field, style, label in (
            ("first", "-o", "first pass"),
            ("first_raw", ":o", "first, raw SQL"),
            ("steady", "-s", "steady pass"),
            ("steady_raw", ":s", "steady, raw SQL"),
        ):
            axes.plot(
                xs,
                [r[field] * 1000 for r in rows],
                style,
                color=colour,
                label=f"{backend}: {label}",
                alpha=1 if "raw" not in field else 0.6,
            )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_ylabel("pass time (ms, median)")
    axes.grid(visible=True, which="both", alpha=0.3)


def main() -> None:
    """Read the results, draw two panels, save the PNG."""
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    results = load(source)
    figure, (by_n, by_k) = plt.subplots(1, 2, figsize=(13, 5.5))
    panel(by_n, results, "tokens", "in_window", 10_000)
    by_n.set_xlabel("N: tokens in the table (k = 10,000 in the window)")
    by_n.set_title("Pass time against N: flat, the cost follows k")
    panel(by_k, results, "in_window", "tokens", 1_000_000)
    by_k.set_xlabel("k: tokens in the window (N = 1,000,000)")
    by_k.set_title("Pass time against k: linear")
    by_k.legend(fontsize=7, loc="upper left")
    figure.suptitle("notifier check pass (log + ui sinks) against the raw-SQL limit")
    figure.tight_layout()
    figure.savefig(target, dpi=110)


if __name__ == "__main__":
    main()
