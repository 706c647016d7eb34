"""The `notifier` command's parser and commands; notifier/cli/__init__.py calls `main`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog

import notifier
from notifier import exitcodes
from notifier.cli import interrupts
from notifier.cli.audit import add_commands as add_audit_commands
from notifier.cli.channels import add_commands as add_channel_commands
from notifier.cli.credentials import add_commands as add_credential_commands
from notifier.cli.interrupts import Interrupted, installed
from notifier.cli.output import (
    Handler,
    add_list_options,
    opened,
    print_json,
    print_table,
    table_time,
    write_list,
)
from notifier.cli.tokens import add_commands as add_token_commands
from notifier.cli.web import add_commands as add_web_commands
from notifier.config.settings import ConfigError, Settings
from notifier.runtime.logs import LogFileError

if TYPE_CHECKING:
    from notifier.resources import NotificationResource

log = structlog.get_logger("notifier.cli")


# --- commands ---------------------------------------------------------------------------------


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    """Run the daemon until SIGTERM/SIGINT."""
    del args
    from notifier.runtime.daemon import Daemon  # noqa: PLC0415 - heavy, only for `run`
    from notifier.web.server import HttpBindError  # noqa: PLC0415

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
    from notifier.core.messages import sentence  # noqa: PLC0415
    from notifier.db import migrate  # noqa: PLC0415
    from notifier.db.database import DatabaseUnavailableError  # noqa: PLC0415
    from notifier.runtime import heap  # noqa: PLC0415
    from notifier.runtime.compose import build  # noqa: PLC0415

    parts = build(settings)
    try:
        migrate.upgrade(parts.database)
        heap.settle()  # start-up is over: its objects stay out of the pass's collections
        report = parts.checker.run(dry_run=args.dry_run)
        if not args.dry_run:
            parts.checker.retire()  # a one-off pass: its policy is not a live replica's
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
    return exitcodes.TEMPFAIL if report.degraded else exitcodes.OK


def cmd_config_show(settings: Settings, args: argparse.Namespace) -> int:
    """Print the effective settings and where each came from."""
    from notifier.config.render import show  # noqa: PLC0415

    shown = show(settings)
    if args.json:
        print_json(
            [
                {"variable": s.variable, "value": s.value, "source": s.source, "secret": s.secret}
                for s in shown
            ]
        )
    else:
        print_table(
            ["VARIABLE", "VALUE", "SOURCE"], [[s.variable, s.value, s.source] for s in shown]
        )
    return exitcodes.OK


def cmd_config_example(settings: Settings | None, args: argparse.Namespace) -> int:
    """Print config.example.env, generated from the settings model."""
    del settings, args
    from notifier.config.render import example_env  # noqa: PLC0415

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


_NOTIFICATION_HEADERS = ("ID", "LEVEL", "LAST SEEN", "SEEN", "MESSAGE")


def _notification_row(notification: NotificationResource) -> list[str]:
    return [
        notification.id,
        notification.level,
        table_time(notification.last_seen),
        str(notification.occurrences),
        notification.message,
    ]


def cmd_notifications_list(settings: Settings, args: argparse.Namespace) -> int:
    """List the UI notifications, most urgent first, as they are read."""
    from notifier.notifications import stream_notifications  # noqa: PLC0415

    with opened(settings) as parts:
        notifications = stream_notifications(
            parts.database, active=None if args.all else True, limit=args.limit
        )
        write_list(args, notifications, _NOTIFICATION_HEADERS, _notification_row)
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
    run.set_defaults(handler=cmd_run, own_sigterm=True)

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
    listing.add_argument("--all", action="store_true", help="include acknowledged and resolved")
    add_list_options(listing, what="notifications")
    listing.set_defaults(handler=cmd_notifications_list)

    tokens_commands = add_token_commands(commands)
    add_audit_commands(commands)
    add_credential_commands(commands)
    add_channel_commands(commands, tokens_commands, notifications_commands)
    add_web_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # `run` and `serve` stop on SIGTERM themselves (exit 0); until they are up, SIGTERM keeps
    # its default, a death systemd counts as clean. Every other command stops with 143.
    signals = (signal.SIGINT,) if getattr(args, "own_sigterm", False) else _STOP_SIGNALS
    with installed(signals):
        try:
            return _main(parser, args)
        except Interrupted as interrupted:
            sys.stderr.write("notifier: interrupted\n")
            return interrupted.exit_code
        except KeyboardInterrupt:  # SIGINT where Python's own handler was still in place
            sys.stderr.write("notifier: interrupted\n")
            return Interrupted(signal.SIGINT).exit_code


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return exitcodes.USAGE
    if not getattr(args, "needs_settings", True):
        return cmd_config_example(None, args)

    from notifier.config.render import unknown_variables  # noqa: PLC0415
    from notifier.config.settings import load_settings  # noqa: PLC0415
    from notifier.runtime import logs  # noqa: PLC0415

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
    # Under systemd every command's lines get their syslog priority, not only the daemon's.
    logs.use_journal_priorities(settings.journal_stream)
    for variable, suggestion in unknown_variables(settings):
        log.warning("config.unknown_variable", variable=variable, did_you_mean=suggestion)
    return _run(handler, settings, args)


def _run(handler: Handler, settings: Settings, args: argparse.Namespace) -> int:
    """Run a command, turning what every command may meet into its exit code."""
    from notifier.db.database import DatabaseUnavailableError  # noqa: PLC0415

    try:
        code = handler(settings, args)
        sys.stdout.flush()  # a reader that went away shows here, not at interpreter exit
        interrupts.done()
    except BrokenPipeError:
        # The reader went away (`notifier tokens list | head`): stop quietly, and keep the
        # interpreter's final flush of stdout from failing again (the signal module's
        # "Note on SIGPIPE").
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return exitcodes.FAILURE
    except DatabaseUnavailableError as error:
        log.error(
            "db.unavailable",
            reason=str(error),
            database=settings.shown_database_url(),
        )
        return exitcodes.UNAVAILABLE
    return code
