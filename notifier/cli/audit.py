"""``notifier audit list``: the audit trail of token changes on the command line."""

from __future__ import annotations

import argparse
from typing import Any

from notifier import exitcodes
from notifier.audit import list_events
from notifier.cli.output import opened, positive_int_argument, print_json, print_table, table_time
from notifier.config.settings import Settings
from notifier.core.messages import escape


def cmd_audit_list(settings: Settings, args: argparse.Namespace) -> int:
    """Show the audit trail, newest first."""
    with opened(settings) as parts:
        events = list_events(parts.database, token_id=args.token, limit=args.limit)
    if args.json:
        print_json(events)
        return exitcodes.OK
    print_table(
        ["AT", "ACTOR", "ACTION", "TOKEN", "NAME"],
        [
            [table_time(e.at), e.actor, e.action, e.token_id or "-", escape(e.token_name or "-")]
            for e in events
        ],
    )
    return exitcodes.OK


def add_commands(commands: Any) -> None:
    """Add ``audit`` to the top-level subparsers."""
    audit = commands.add_parser("audit", help="the audit trail of token changes")
    audit_sub = audit.add_subparsers(title="commands", metavar="COMMAND", required=True)
    audit_list = audit_sub.add_parser("list", help="events, newest first")
    audit_list.add_argument("--token", metavar="ID", help="only this token's events")
    audit_list.add_argument("--limit", type=positive_int_argument, help="at most this many events")
    audit_list.add_argument("--json", action="store_true", help="print a JSON array")
    audit_list.set_defaults(handler=cmd_audit_list)
