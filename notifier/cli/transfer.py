"""``notifier tokens import`` and ``tokens export``: token files in and out.

An import is all or nothing; an interruption says truthfully whether the commit happened.
Export writes JSONL in exactly the shape import reads, a token at a time as it reads them.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from notifier import exitcodes
from notifier.audit import os_actor
from notifier.cli.interrupts import Deferral, Interrupted
from notifier.cli.output import fail, opened
from notifier.config.settings import Settings


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    """Upsert tokens from a JSONL, CSV or api-keys.json file, all or nothing."""
    from notifier.tokens.importer import detect_format  # noqa: PLC0415

    try:
        file_format = args.format or detect_format(Path(args.file))
    except ValueError as error:
        fail(str(error))
        return exitcodes.USAGE
    progress = _ImportProgress()
    try:
        return _import(settings, args, file_format, progress)
    except Interrupted as interrupted:
        # Signals are held back from just before the commit until *progress* says whether it
        # happened, so this line is true whenever the signal came.
        if progress.committed_rows is None:
            fail("interrupted; nothing was imported")
        else:
            fail(f"interrupted after the commit; all {progress.committed_rows} rows were imported")
        return interrupted.exit_code


@dataclass
class _ImportProgress:
    """How far an import got, for the line an interruption prints."""

    committed_rows: int | None = None  # set once the commit has returned


def _import(
    settings: Settings, args: argparse.Namespace, file_format: str, progress: _ImportProgress
) -> int:
    from tqdm import tqdm  # noqa: PLC0415

    from notifier.tokens.importer import ImportDataError, read_rows  # noqa: PLC0415

    try:
        stream = _open(args.file)
    except OSError as error:
        fail(f"cannot read {args.file}: {error.strerror}")
        return exitcodes.NOINPUT
    quiet = not sys.stderr.isatty()
    # On a terminal, the rows read and checked (staged), then the rows written, out of those
    # (on PostgreSQL the two advance together; nothing is committed before the end).
    checking = tqdm(desc="checking", unit="token", file=sys.stderr, disable=quiet)
    writing = tqdm(desc="writing", unit="token", file=sys.stderr, disable=quiet)

    def written(count: int) -> None:
        writing.total = checking.n
        writing.update(count)

    deferral = Deferral()
    with stream, checking, writing, opened(settings) as parts:
        rows = read_rows(
            stream, file_format, now=parts.clock.now(), max_lifetime=settings.token_max_lifetime
        )
        try:
            report = parts.tokens.import_records(
                rows,
                actor=os_actor(),
                staged=checking.update,
                progress=written,
                before_commit=deferral.start,
            )
            progress.committed_rows = report.created + report.updated + report.unchanged
        except ImportDataError as error:
            checking.close()
            writing.close()
            for row_error in error.errors:
                fail(f"{args.file}: {row_error}")
            fail(f"nothing imported: {len(error.errors)} bad row(s)")
            return exitcodes.DATAERR
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            fail(f"cannot read {args.file}: {reason}")
            return exitcodes.NOINPUT
        finally:
            deferral.end()  # raises Interrupted now if a signal came during the commit
    sys.stdout.write(
        f"Imported {progress.committed_rows} token(s): {report.created} created, "
        f"{report.updated} updated, {report.unchanged} unchanged.\n"
    )
    return exitcodes.OK


def _open(file: str) -> TextIO:
    """The import file (or stdin for ``-``) as UTF-8 text, read as it goes."""
    if file == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", newline="")
    return Path(file).open(encoding="utf-8", newline="")


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    """Write every token's metadata as JSONL, in the shape import reads, as it is read."""
    del args  # --jsonl names the one shape export writes
    try:
        with opened(settings) as parts:
            for record in parts.tokens.export():
                sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    except Interrupted as interrupted:
        fail("interrupted; the export is incomplete")
        return interrupted.exit_code
    return exitcodes.OK


def add_commands(sub: Any) -> None:
    """Add ``import`` and ``export`` to the subparsers of ``tokens``."""
    importing = sub.add_parser("import", help="upsert tokens from JSONL, CSV or api-keys.json")
    importing.add_argument("file", help="the file to read, or - for stdin (with --format)")
    importing.add_argument(
        "--format",
        choices=["jsonl", "csv", "api-keys"],
        help="the file's format (default: from its extension)",
    )
    importing.set_defaults(handler=cmd_import)

    export = sub.add_parser("export", help="every token's metadata as JSONL (no secrets)")
    export.add_argument(
        "--jsonl", action="store_true", help="JSON Lines, one token per line (the only shape)"
    )
    export.set_defaults(handler=cmd_export)
