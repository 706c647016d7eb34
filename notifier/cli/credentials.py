"""``notifier credentials list``: every watched credential on the command line, streamed.

The store's tokens and what each other source found in its last pass, with the filters and
sorts of ``GET /api/v1/credentials`` (notifier/credentials.py).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from notifier import exitcodes
from notifier.cli.output import (
    add_list_options,
    aware_time_argument,
    duration_argument,
    label_argument,
    opened,
    table_time,
    write_list,
)
from notifier.config.settings import Settings
from notifier.core.messages import escape
from notifier.core.model import CredentialKind

if TYPE_CHECKING:
    from notifier.resources import CredentialResource

_HEADERS = ("KIND", "SOURCE", "NAME", "ID", "EXPIRES", "DAYS LEFT", "STATUS", "SEEN")
# The list's statuses and sorts (notifier.credentials.listing), written out: the parser is
# built for every command, and importing the lists would slow `check` down (issue #13).
STATUS_CHOICES = ("active", "expiring", "expired", "superseded")
SORT_CHOICES = ("expires_at", "-expires_at", "name", "-name")


def _row(credential: CredentialResource) -> list[str]:
    return [
        credential.kind,
        credential.source,
        escape(credential.name),
        credential.id,
        table_time(credential.expires_at, "never"),
        "-" if credential.days_left is None else str(credential.days_left),
        credential.status,
        "live" if credential.seen_at is None else table_time(credential.seen_at),
    ]


def cmd_credentials_list(settings: Settings, args: argparse.Namespace) -> int:
    """List every watched credential, soonest expiry first, as it is read."""
    from notifier.credentials.listing import KINDS, STATUSES, CredentialFilter  # noqa: PLC0415
    from notifier.tokens.listing import label_filters  # noqa: PLC0415 - for listings only

    wanted = CredentialFilter(
        kinds=frozenset(args.kind or KINDS),
        statuses=frozenset(args.status or STATUSES),
        source=args.source,
        owner=args.owner,
        labels=label_filters(args.label or []),
        expiring_within=args.expiring_within,
        expires_after=args.expires_after,
        expires_before=args.expires_before,
        search=args.search,
    )
    with opened(settings) as parts:
        credentials = parts.credentials.stream(
            wanted, now=parts.clock.now(), sort=args.sort, limit=args.limit
        )
        write_list(args, credentials, _HEADERS, _row)
    return exitcodes.OK


def add_commands(commands: Any) -> None:
    """Add ``credentials`` to the top-level subparsers."""
    credentials = commands.add_parser(
        "credentials", help="every watched credential: tokens, certificates, leases, access keys"
    )
    sub = credentials.add_subparsers(title="commands", metavar="COMMAND", required=True)
    listing = sub.add_parser(
        "list",
        help="list what every source watches, with days left",
        description=(
            "List every watched credential, soonest expiry first, streamed: the store's "
            "tokens (all but the revoked) and what each other source found in its last "
            "pass. The filters are those of GET /api/v1/credentials."
        ),
    )
    listing.add_argument(
        "--kind",
        action="append",
        choices=[kind.value for kind in CredentialKind],
        help="only this kind; repeat for several",
    )
    listing.add_argument(
        "--status",
        action="append",
        choices=STATUS_CHOICES,
        help="only this status; repeat for several (default: all)",
    )
    listing.add_argument("--source", metavar="NAME", help="only this source: store, vault:prod")
    listing.add_argument("--owner", help="only this owner's credentials (the exact owner)")
    listing.add_argument(
        "--label",
        action="append",
        type=label_argument,
        metavar="KEY=VALUE",
        help="only credentials with this label; repeat for several (each must match)",
    )
    listing.add_argument(
        "--expiring-within",
        type=duration_argument,
        metavar="DURATION",
        help="only credentials that expire within this time, e.g. 30d",
    )
    listing.add_argument(
        "--expires-after",
        type=aware_time_argument,
        metavar="TIME",
        help="only credentials that expire at or after this RFC 3339 time",
    )
    listing.add_argument(
        "--expires-before",
        type=aware_time_argument,
        metavar="TIME",
        help="only credentials that expire before this RFC 3339 time",
    )
    listing.add_argument(
        "--search", metavar="TEXT", help="only those whose name (any case) or id starts with it"
    )
    listing.add_argument(
        "--sort",
        choices=SORT_CHOICES,
        default="expires_at",
        metavar="ORDER",
        help="expires_at (the default) or name; a leading - sorts descending: --sort=-name",
    )
    add_list_options(listing, what="credentials")
    listing.set_defaults(handler=cmd_credentials_list)
