"""The ``notifier`` command: data on stdout, logs on stderr, sysexits exit codes.

Exit codes: 0 ok; 1 the operation failed; 2 usage; 69 the database (or the HTTP port) is
unavailable; 75 the pass ran but some deliveries failed and will be retried; 78 the
configuration is invalid.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog
from pydantic import BaseModel

import notifier
from notifier import exitcodes
from notifier.durations import DurationError, parse_duration
from notifier.logs import LogFileError, rfc3339
from notifier.messages import escape
from notifier.settings import ConfigError, Settings

log = structlog.get_logger("notifier.cli")

Handler = Callable[[Settings, argparse.Namespace], int]


# --- argument types ---------------------------------------------------------------------------


def _ttl(text: str) -> timedelta:
    try:
        value = parse_duration(text)
    except DurationError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if value <= timedelta(0):
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than zero")
    return value


def _aware_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (e.g. 2027-01-31T12:00:00Z)"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no timezone; add Z or an offset such as +02:00"
        )
    return value


# --- output helpers ---------------------------------------------------------------------------


def _print_json(value: BaseModel | Sequence[BaseModel] | Any) -> None:
    if isinstance(value, BaseModel):
        data: Any = value.model_dump(mode="json")
    elif isinstance(value, list) and all(isinstance(item, BaseModel) for item in value):
        data = [item.model_dump(mode="json") for item in value]
    else:
        data = value
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    for line in [headers, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=True)]
        sys.stdout.write("  ".join(cells).rstrip() + "\n")


def _time(value: datetime | None, empty: str = "-") -> str:
    """A time for a table: RFC 3339 to the second."""
    return rfc3339(value.replace(microsecond=0)) if value is not None else empty


# --- commands ---------------------------------------------------------------------------------


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    """Run the daemon until SIGTERM/SIGINT."""
    del args
    from notifier.daemon import Daemon, HttpBindError  # noqa: PLC0415 - heavy, only for `run`

    try:
        daemon = Daemon(settings)
        code = daemon.run()
    except HttpBindError as error:
        log.error("http.bind_failed", reason=str(error))
        return exitcodes.UNAVAILABLE
    if code != exitcodes.OK:
        # A pass outlived the shutdown timeout; its thread would hold the interpreter open.
        logging.shutdown()
        os._exit(code)
    return code


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    """Run one pass, then exit."""
    from notifier.compose import build  # noqa: PLC0415
    from notifier.db import migrate  # noqa: PLC0415
    from notifier.db.database import DatabaseUnavailableError  # noqa: PLC0415
    from notifier.messages import sentence  # noqa: PLC0415

    parts = build(settings)
    try:
        migrate.upgrade(parts.database)
        report = parts.checker.run(dry_run=args.dry_run)
    except DatabaseUnavailableError:
        raise
    except Exception as error:
        log.exception("check.failed", reason=f"{type(error).__name__}: {error}")
        return exitcodes.FAILURE
    finally:
        parts.close()
    extra = {"dry_run": True} if args.dry_run else {}
    log.info("check.completed", **report.fields(), **extra)
    for notice in report.would_send:
        sys.stdout.write(f"{notice.sink}\t{sentence(notice, settings.log_slice_name)}\n")
    return exitcodes.TEMPFAIL if report.failures else exitcodes.OK


def cmd_config_show(settings: Settings, args: argparse.Namespace) -> int:
    """Print the effective settings and where each came from."""
    from notifier.settings import show  # noqa: PLC0415

    shown = show(settings)
    if args.json:
        _print_json(
            [
                {"variable": s.variable, "value": s.value, "source": s.source, "secret": s.secret}
                for s in shown
            ]
        )
    else:
        _print_table(
            ["VARIABLE", "VALUE", "SOURCE"], [[s.variable, s.value, s.source] for s in shown]
        )
    return exitcodes.OK


def cmd_config_example(settings: Settings | None, args: argparse.Namespace) -> int:
    """Print config.example.env, generated from the settings model."""
    del settings, args
    from notifier.settings import example_env  # noqa: PLC0415

    sys.stdout.write(example_env())
    return exitcodes.OK


def cmd_db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    """Apply the schema migrations."""
    del args
    from notifier.db import migrate  # noqa: PLC0415
    from notifier.db.database import Database  # noqa: PLC0415

    database = Database(settings.effective_database_url())
    try:
        applied = migrate.upgrade(database)
    finally:
        database.dispose()
    log.info("db.migrated" if applied else "db.current", revision=migrate.HEAD)
    return exitcodes.OK


def cmd_notifications_list(settings: Settings, args: argparse.Namespace) -> int:
    """List the UI notifications."""
    from notifier.compose import build  # noqa: PLC0415
    from notifier.db import migrate  # noqa: PLC0415
    from notifier.notifications import list_notifications  # noqa: PLC0415

    parts = build(settings)
    try:
        migrate.upgrade(parts.database)
        notifications = list_notifications(parts.database, include_inactive=args.all)
    finally:
        parts.close()
    if args.json:
        _print_json(notifications)
        return exitcodes.OK
    _print_table(
        ["ID", "LEVEL", "LAST SEEN", "SEEN", "MESSAGE"],
        [[n.id, n.level, _time(n.last_seen), str(n.occurrences), n.message] for n in notifications],
    )
    return exitcodes.OK


def _token_parts(settings: Settings) -> Any:
    from notifier.compose import build  # noqa: PLC0415
    from notifier.db import migrate  # noqa: PLC0415

    parts = build(settings)
    migrate.upgrade(parts.database)
    return parts


def cmd_tokens_create(settings: Settings, args: argparse.Namespace) -> int:
    """Create a token and print its secret, once."""
    from notifier.tokens.store import TokenInputError  # noqa: PLC0415

    parts = _token_parts(settings)
    try:
        now = parts.clock.now()
        expires_at = args.expires_at or now + (args.ttl or settings.token_default_ttl)
        try:
            created = parts.tokens.create(name=args.name, role=args.role, expires_at=expires_at)
        except TokenInputError as error:
            sys.stderr.write(f"notifier: {error}\n")
            return exitcodes.USAGE
    finally:
        parts.close()
    if args.json:
        _print_json(created)
        return exitcodes.OK
    sys.stdout.write(
        f"Created token {created.id} ({escape(created.name)}), "
        f"expires {_time(created.expires_at, 'never')}.\n"
        "Store this secret now; it is not shown again:\n"
        f"{created.token}\n"
    )
    return exitcodes.OK


def cmd_tokens_list(settings: Settings, args: argparse.Namespace) -> int:
    """List the tokens."""
    parts = _token_parts(settings)
    try:
        tokens = parts.tokens.list(include_revoked=args.all)
    finally:
        parts.close()
    if args.json:
        _print_json(tokens)
        return exitcodes.OK
    _print_table(
        ["ID", "NAME", "ROLE", "EXPIRES", "DAYS LEFT", "STATUS"],
        [
            [
                t.id,
                escape(t.name),
                escape(t.role or "-"),
                _time(t.expires_at, "never"),
                "-" if t.days_left is None else str(t.days_left),
                t.status,
            ]
            for t in tokens
        ],
    )
    return exitcodes.OK


def cmd_tokens_revoke(settings: Settings, args: argparse.Namespace) -> int:
    """Revoke a token by id."""
    from notifier.tokens.store import TokenNotFoundError  # noqa: PLC0415

    parts = _token_parts(settings)
    try:
        token = parts.tokens.revoke(args.id)
    except TokenNotFoundError as error:
        sys.stderr.write(f"notifier: {error.args[0]}\n")
        return exitcodes.FAILURE
    finally:
        parts.close()
    sys.stdout.write(f"Revoked token {token.id} ({escape(token.name)}).\n")
    return exitcodes.OK


# --- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="notifier",
        description="Warn before API tokens expire, and manage the tokens.",
        epilog="Configuration comes from NOTIFIER_* environment variables: notifier config.",
    )
    parser.add_argument("--version", action="version", version=f"notifier {notifier.__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = commands.add_parser("run", help="run the daemon: a pass at start, then every interval")
    run.set_defaults(handler=cmd_run)

    check = commands.add_parser("check", help="run one pass and exit (0, 75, 1 or 69)")
    check.add_argument(
        "--dry-run", action="store_true", help="print what would be sent; record nothing"
    )
    check.set_defaults(handler=cmd_check)

    config = commands.add_parser("config", help="show the effective configuration")
    config.add_argument("--json", action="store_true", help="print JSON")
    config.set_defaults(handler=cmd_config_show)
    config_commands = config.add_subparsers(title="commands", metavar="COMMAND")
    show = config_commands.add_parser(
        "show", help="effective settings, where each came from, secrets redacted"
    )
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=cmd_config_show)
    example = config_commands.add_parser(
        "example", help="print config.example.env, generated from the settings"
    )
    example.set_defaults(handler=cmd_config_example, needs_settings=False)

    database = commands.add_parser("db", help="database maintenance")
    database_commands = database.add_subparsers(title="commands", metavar="COMMAND", required=True)
    upgrade = database_commands.add_parser("upgrade", help="apply schema migrations")
    upgrade.set_defaults(handler=cmd_db_upgrade)

    notifications = commands.add_parser("notifications", help="the UI notifications")
    notifications_commands = notifications.add_subparsers(
        title="commands", metavar="COMMAND", required=True
    )
    listing = notifications_commands.add_parser("list", help="list active notifications")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.add_argument("--all", action="store_true", help="include acknowledged and resolved")
    listing.set_defaults(handler=cmd_notifications_list)

    tokens = commands.add_parser("tokens", help="create, list and revoke tokens")
    tokens_commands = tokens.add_subparsers(title="commands", metavar="COMMAND", required=True)
    create = tokens_commands.add_parser("create", help="create a token; its secret is shown once")
    create.add_argument("--name", required=True, help="what the token is for")
    create.add_argument("--role", help="the role it acts as")
    lifetime = create.add_mutually_exclusive_group()
    lifetime.add_argument(
        "--ttl",
        type=_ttl,
        help="lifetime, e.g. 72h, 30d, 1h30m (default: NOTIFIER_TOKEN_DEFAULT_TTL)",
    )
    lifetime.add_argument(
        "--expires-at",
        type=_aware_time,
        help="expiry as ISO 8601 with a zone, e.g. 2027-01-31T12:00Z",
    )
    create.add_argument("--json", action="store_true", help="print JSON with the secret")
    create.set_defaults(handler=cmd_tokens_create)
    token_list = tokens_commands.add_parser("list", help="list tokens with days left and status")
    token_list.add_argument("--json", action="store_true", help="print a JSON array")
    token_list.add_argument("--all", action="store_true", help="include revoked tokens")
    token_list.set_defaults(handler=cmd_tokens_list)
    revoke = tokens_commands.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id", help="the token id")
    revoke.set_defaults(handler=cmd_tokens_revoke)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return exitcodes.USAGE
    if not getattr(args, "needs_settings", True):
        return cmd_config_example(None, args)

    from notifier import logs  # noqa: PLC0415
    from notifier.db.database import DatabaseUnavailableError  # noqa: PLC0415
    from notifier.settings import load_settings, unknown_variables  # noqa: PLC0415

    try:
        settings = load_settings()
    except ConfigError as error:
        for line in error.lines:
            sys.stderr.write(f"notifier: configuration error: {line}\n")
        return exitcodes.CONFIG
    try:
        logs.configure(
            log_format=settings.log_format, level=settings.log_level, log_file=settings.log_file
        )
    except LogFileError as error:
        sys.stderr.write(f"notifier: configuration error: NOTIFIER_LOG_FILE: {error}\n")
        return exitcodes.CONFIG
    for variable, suggestion in unknown_variables():
        log.warning("config.unknown_variable", variable=variable, did_you_mean=suggestion)
    try:
        return handler(settings, args)
    except DatabaseUnavailableError as error:
        log.error(
            "db.unavailable",
            reason=str(error),
            database=settings.effective_database_url().render_as_string(hide_password=True),
        )
        return exitcodes.UNAVAILABLE
