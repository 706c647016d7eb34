"""Interfaces at a fleet's scale (#14): the API, the CLI and serve's memory at 1M tokens.

One run builds (or reuses, ``--reuse``) a database of ``--tokens`` made-up tokens with
``notifier.testing.fill_tokens``, then measures, each ``--repeat`` times with medians:

- the API through a real ``notifier serve`` on loopback: the first page of 100, the next
  pages by their Link headers (and that no page repeats a row), a search by name, the
  summary, and serve's resident memory (its peak, VmHWM) after all of that;
- ``notifier tokens list --limit 50`` and ``notifier tokens list --json`` over every row:
  wall time and peak RSS of the process, as GNU time (``/usr/bin/time``) reports it;
- every watched credential (#15): the store's tokens merged with ``--found`` certificates
  an x509 source found (10,000 by default): ``/api/v1/credentials``' first page, next pages,
  one kind's page, and ``notifier credentials list --limit 50``;
- beside each, its baseline in the same run: the same page as one hand-written SQL query on
  the driver (sqlite3 or psycopg), a bare ``python -c "import sqlite3"`` for the commands.

The goals of the issue are absolute (first page < 0.5 s, a search < 1 s, serve < 200 MiB,
``--limit 50`` < 3 s and < 150 MiB, ``--json`` < 250 MiB); both the figures and the ratios
are printed, and written with ``--json``.

    python bench/interfaces.py --tokens 1000000
    python bench/interfaces.py --tokens 1000000 --database postgresql+psycopg://postgres@127.0.0.1/bench
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy.engine import make_url

from notifier.core.model import CredentialKind, WatchedToken
from notifier.credentials.found import record_found
from notifier.db import migrate
from notifier.db.database import Database
from notifier.testing import fill_tokens

PYTHON = Path(sys.executable)
NOTIFIER = PYTHON.parent / "notifier"
NOW = datetime.now(UTC)
_LINK = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')
MIB = 1024 * 1024


def certificates(count: int) -> list[WatchedToken]:
    """*count* certificates as an x509 source reports them, expiring over the next year."""
    return [
        WatchedToken(
            source="x509",
            token_id=hashlib.sha256(str(number).encode()).hexdigest(),
            name=f"host-{number}.example.com",
            expires_at=NOW + timedelta(hours=number % (365 * 24)),
            created_at=NOW - timedelta(days=90),
            labels={"location": f"/etc/ssl/host-{number}.pem"},
            credential_kind=CredentialKind.CERTIFICATE,
        )
        for number in range(count)
    ]


def median_of(repeat: int, measure: Callable[[], float]) -> float:
    """The median of *repeat* calls of *measure*."""
    return statistics.median(measure() for _ in range(repeat))


GNU_TIME = Path("/usr/bin/time")  # Debian's `time` package


def run_command(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of *command*, its output thrown away; it must exit 0.

    The peak is GNU time's ``%M``, not ``ru_maxrss`` from ``wait4``: Linux starts a child's
    high-water mark at the RSS of the process that forked it, and this one can hold hundreds
    of MiB (bench/import_cost.py says the same). ``time`` is a small C program.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as report:
        started = time.perf_counter()
        result = subprocess.run(
            [str(GNU_TIME), "-f", "%M", "-o", report.name, *command],
            env=env,
            stdout=subprocess.DEVNULL,
            check=False,
        )
        wall = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"{command} failed")
        return wall, int(report.read().split()[-1]) / 1024  # %M is in KiB


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def vm_hwm(pid: int) -> float:
    """The peak resident memory of *pid* so far, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def raw_first_page(url: str) -> Callable[[], float]:
    """The baseline: the first page of 100 as one query on the driver, connection included."""
    sql = (
        "SELECT * FROM tokens WHERE (revoked_at IS NULL OR revoked_at > %s)"
        " AND expires_at IS NOT NULL ORDER BY expires_at, id LIMIT 101"
    )
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        stamp = NOW.isoformat(" ", "microseconds")[:26]

        def sqlite_page() -> float:
            started = time.perf_counter()
            with sqlite3.connect(path) as connection:
                connection.execute(sql.replace("%s", "?"), (stamp,)).fetchall()
            return time.perf_counter() - started

        return sqlite_page
    import psycopg  # noqa: PLC0415 - only for a PostgreSQL run

    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)

    def postgresql_page() -> float:
        started = time.perf_counter()
        with psycopg.connect(dsn) as connection:
            connection.execute(sql, (NOW,)).fetchall()
        return time.perf_counter() - started

    return postgresql_page


def follow(
    timed: Callable[[str], tuple[float, httpx.Response]],
    url: str,
    pages: int,
    key: tuple[str, ...],
) -> tuple[list[float], int, httpx.Response]:
    """Follow *pages* Link headers from *url*: each page's time, rows seen twice, the last."""
    elapsed_each: list[float] = []
    seen: set[tuple[Any, ...]] = set()
    overlap = 0
    current: str | None = url
    response = None
    for _ in range(pages):
        if current is None:
            break
        elapsed, response = timed(current)
        elapsed_each.append(elapsed)
        keys = {tuple(item[field] for field in key) for item in response.json()}
        overlap += len(keys & seen)
        seen |= keys
        match = _LINK.match(response.headers.get("link", ""))
        current = match["url"] if match else None
    if response is None:
        raise SystemExit(f"{url}: no page was read")
    return elapsed_each, overlap, response


def measure_api(env: dict[str, str], repeat: int, pages: int) -> dict[str, Any]:
    """First page, next pages, a search and the summary through a real serve; its memory."""
    port = free_port()
    created = subprocess.run(
        [str(NOTIFIER), "tokens", "create", "--name", "bench", "--permission", "*", "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    secret = json.loads(created.stdout)["token"]
    serve = subprocess.Popen(
        [str(NOTIFIER), "serve"],
        env={**env, "NOTIFIER_HTTP_ADDRESS": f"127.0.0.1:{port}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}) as client:
            for _ in range(200):
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            started_rss = vm_hwm(serve.pid)

            def timed(url: str) -> tuple[float, httpx.Response]:
                started = time.perf_counter()
                response = client.get(url)
                elapsed = time.perf_counter() - started
                response.raise_for_status()
                return elapsed, response

            firsts = []
            for _ in range(repeat):
                elapsed, response = timed("/api/v1/tokens")
                firsts.append(elapsed)
            nexts, overlap, response = follow(timed, "/api/v1/tokens", pages, ("id",))
            name = response.json()[-1]["name"]
            searches = [timed(f"/api/v1/tokens?q={quote(name)}")[0] for _ in range(repeat)]
            short = [timed("/api/v1/tokens?q=ci-d")[0] for _ in range(repeat)]
            summaries = [timed("/api/v1/tokens/summary")[0] for _ in range(repeat)]
            sorted_pages = [
                timed(f"/api/v1/tokens?sort={sort}&status=active")[0]
                for sort in ("name", "-name", "created_at", "-expires_at")
            ]
            credential_pages = [timed("/api/v1/credentials")[0] for _ in range(repeat)]
            credential_nexts, credential_overlap, _ = follow(
                timed, "/api/v1/credentials", pages, ("source", "id")
            )
            certificates = [timed("/api/v1/credentials?kind=certificate")[0] for _ in range(repeat)]
            page_rows = measure_page(base, secret, options_repeat=repeat)
            return {
                **page_rows,
                "first page s": statistics.median(firsts),
                "next page s (median)": statistics.median(nexts),
                "next page s (slowest)": max(nexts),
                "pages followed": len(nexts),
                "rows repeated across pages": overlap,
                "search by name s": statistics.median(searches),
                "search 'ci-d' s": statistics.median(short),
                "summary s": statistics.median(summaries),
                "other sorts s (slowest)": max(sorted_pages),
                "credentials first page s": statistics.median(credential_pages),
                "credentials next page s (median)": statistics.median(credential_nexts),
                "credentials next page s (slowest)": max(credential_nexts),
                "credentials rows repeated across pages": credential_overlap,
                "credentials kind=certificate page s": statistics.median(certificates),
                "serve RSS at start MiB": started_rss,
                "serve peak RSS MiB": vm_hwm(serve.pid),
            }
    finally:
        serve.terminate()
        serve.wait(timeout=30)


CHROMIUM = Path("/usr/bin/chromium")


def measure_page(base: str, secret: str, *, options_repeat: int) -> dict[str, float]:
    """Sign in on the web page in headless Chromium: seconds until its first rows show."""
    if not CHROMIUM.exists():
        print("no /usr/bin/chromium: the page is not measured")
        return {}
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - a dev dependency

    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            for _ in range(options_repeat):
                page = browser.new_page()
                page.goto(base + "/")
                page.locator("#token-input").fill(secret)
                started = time.perf_counter()
                page.keyboard.press("Enter")
                page.locator("#tokens-body tr").first.wait_for(timeout=60_000)
                times.append(time.perf_counter() - started)
                page.close()
        finally:
            browser.close()
    return {"page: first rows after signing in s": statistics.median(times)}


def main() -> None:
    """Fill (or reuse) the fleet, measure every interface, print and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pages", type=int, default=50, help="next pages followed")
    parser.add_argument("--database", help="a database URL (default: a SQLite file)")
    parser.add_argument("--reuse", type=Path, help="a SQLite file filled by an earlier run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--found", type=int, default=10_000, help="certificates an x509 source found"
    )
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="notifier-interfaces-") as scratch:
        url = options.database or f"sqlite:///{options.reuse or Path(scratch) / 'fleet.db'}"
        database = Database(make_url(url))
        migrate.upgrade(database)
        if options.reuse is None:
            started = time.perf_counter()
            fill_tokens(database, options.tokens, now=NOW)
            print(f"filled {options.tokens:,} tokens in {time.perf_counter() - started:.1f} s")
        record_found(database, "x509", certificates(options.found), NOW)
        database.dispose()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": scratch,
            "NOTIFIER_DATABASE_URL": url,
        }
        raw = median_of(options.repeat, raw_first_page(url))
        bare = median_of(
            options.repeat, lambda: run_command([str(PYTHON), "-c", "import sqlite3"], env)[0]
        )
        results: dict[str, Any] = {"tokens": options.tokens, "database": make_url(url).drivername}
        results.update(measure_api(env, options.repeat, options.pages))
        results["raw first page s"] = raw
        runs = [run_command([str(NOTIFIER), "tokens", "list", "--limit", "50"], env)]
        runs += [run_command([str(NOTIFIER), "tokens", "list", "--limit", "50"], env)
                 for _ in range(options.repeat - 1)]  # fmt: skip
        results["tokens list --limit 50 s"] = statistics.median(wall for wall, _ in runs)
        results["tokens list --limit 50 peak RSS MiB"] = max(rss for _, rss in runs)
        wall, rss = run_command([str(NOTIFIER), "tokens", "list", "--json", "--all"], env)
        results["tokens list --json (every row) s"] = wall
        results["tokens list --json peak RSS MiB"] = rss
        runs = [
            run_command([str(NOTIFIER), "credentials", "list", "--limit", "50"], env)
            for _ in range(options.repeat)
        ]
        results["credentials list --limit 50 s"] = statistics.median(wall for wall, _ in runs)
        results["credentials list --limit 50 peak RSS MiB"] = max(rss for _, rss in runs)
        results["bare python s"] = bare
        results["first page / raw query"] = results["first page s"] / raw
        results["tokens list --limit 50 / bare python"] = results["tokens list --limit 50 s"] / bare
    width = max(len(name) for name in results)
    for name, value in results.items():
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"{name.ljust(width)}  {shown}")
    if options.json is not None:
        options.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
