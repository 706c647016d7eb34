"""``notifier audit list``: the audit trail of token changes on the command line, streamed."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from notifier import exitcodes
from notifier.audit import stream_events
from notifier.cli.output import add_list_options, opened, table_time, write_list
from notifier.config.settings import Settings
from notifier.core.messages import escape

if TYPE_CHECKING:
    from notifier.resources import AuditEventResource

_HEADERS = ("AT", "ACTOR", "ACTION", "TOKEN", "NAME")


def _row(event: AuditEventResource) -> list[str]:
    return [
        table_time(event.at),
        event.actor,
        event.action,
        event.token_id or "-",
        escape(event.token_name or "-"),
    ]


def cmd_audit_list(settings: Settings, args: argparse.Namespace) -> int:
    """Show the audit trail, newest first, as it is read."""
    with opened(settings) as parts:
        events = stream_events(
            parts.database, token_id=args.token, action=args.action, limit=args.limit
        )
        write_list(args, events, _HEADERS, _row)
    return exitcodes.OK


def add_commands(commands: Any) -> None:
    """Add ``audit`` to the top-level subparsers."""
    audit = commands.add_parser("audit", help="the audit trail of token changes")
    audit_sub = audit.add_subparsers(title="commands", metavar="COMMAND", required=True)
    audit_list = audit_sub.add_parser("list", help="events, newest first")
    audit_list.add_argument("--token", metavar="ID", help="only this token's events")
    audit_list.add_argument(
        "--action",
        metavar="ACTION",
        help=(
            "only events of this action: create, rotate, revoke, delete, import, ack, "
            "snooze or unsnooze"
        ),
    )
    add_list_options(audit_list, what="events")
    audit_list.set_defaults(handler=cmd_audit_list)
