"""``notifier tokens ...``: the token lifecycle on the command line.

The secret appears exactly once, on stdout, from ``create`` and ``rotate``. ``verify`` reads
it from stdin or ``NOTIFIER_TOKEN``, never from the command line, where ``ps`` and shell
history would keep it. ``import`` and ``export`` are :mod:`notifier.cli.transfer`'s.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import sys
from typing import TYPE_CHECKING, Any

from notifier import exitcodes
from notifier.audit import os_actor
from notifier.cli.output import (
    Handler,
    add_list_options,
    aware_time_argument,
    duration_argument,
    fail,
    label_argument,
    non_negative_duration_argument,
    opened,
    print_json,
    table_time,
    usage_error,
    write_list,
)
from notifier.cli.transfer import add_commands as add_transfer_commands
from notifier.config.settings import Settings
from notifier.core.durations import format_duration
from notifier.core.messages import escape
from notifier.tokens.fields import TokenInputError, lifetime_text, parse_label

if TYPE_CHECKING:
    # The token store and its resources are imported by the commands that open it: the
    # parser is built for every command, `check` included (issue #13).
    from notifier.resources import CreatedToken, TokenResource


def _on_a_token(handler: Handler) -> Handler:
    """Answer an unknown id, or a token in the wrong state, with its one line and exit 1."""

    @functools.wraps(handler)
    def run(settings: Settings, args: argparse.Namespace) -> int:
        from notifier.tokens.lifecycle import TokenNotFoundError, TokenStateError  # noqa: PLC0415

        try:
            return handler(settings, args)
        except (TokenNotFoundError, TokenStateError) as error:
            fail(str(error))
            return exitcodes.FAILURE

    return run


def _show_created(created: CreatedToken, *, as_json: bool, verb: str) -> None:
    if as_json:
        print_json(created)
        return
    sys.stdout.write(
        f"{verb} token {created.id} ({escape(created.name)}), "
        f"expires {table_time(created.expires_at, 'never')}.\n"
        "Store this secret now; it is not shown again:\n"
        f"{created.token}\n"
    )


def _show_token(token: TokenResource) -> None:
    rows = [
        ("id", token.id),
        ("name", escape(token.name)),
        ("status", token.status),
        ("role", escape(token.role or "-")),
        ("permissions", " ".join(token.permissions) or "-"),
        ("owner", escape(token.owner or "-")),
        ("labels", ", ".join(f"{k}={escape(v)}" for k, v in token.labels.items()) or "-"),
        ("description", escape(token.description or "-")),
        ("created", table_time(token.created_at)),
        ("expires", table_time(token.expires_at, "never")),
        ("days left", "-" if token.days_left is None else str(token.days_left)),
        ("revoked", table_time(token.revoked_at)),
        ("last used", table_time(token.last_used_at)),
        ("rotated from", token.rotated_from or "-"),
        ("superseded by", token.superseded_by or "-"),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        sys.stdout.write(f"{label.ljust(width)}  {value}\n")


# The option that sets each field, for a refusal that names it as argparse would.
_OPTIONS = {
    "name": "--name",
    "role": "--role",
    "permissions": "--permission",
    "owner": "--owner",
    "labels": "--label",
    "description": "--description",
}


def _refused(args: argparse.Namespace, error: TokenInputError) -> int:
    """Exit 2 naming the option behind the refused field."""
    field = error.field.split(".", 1)[0]  # labels.<key>
    if field == "expires_at":
        option = _lifetime_option(args)
        if option is not None:
            return usage_error(args, option, error.reason)
    elif field in _OPTIONS:
        return usage_error(args, _OPTIONS[field], error.reason)
    return usage_error(args, None, str(error))


def _lifetime_option(args: argparse.Namespace) -> str | None:
    if getattr(args, "no_expiry", False):
        return "--no-expiry"
    if args.expires_at is not None:
        return "--expires-at"
    if args.ttl is not None:
        return "--ttl"
    return None


def _ttl_refused(args: argparse.Namespace, settings: Settings) -> int | None:
    """Exit 2 when --ttl is longer than NOTIFIER_TOKEN_MAX_LIFETIME allows; else None."""
    limit = settings.token_max_lifetime
    if args.ttl is None or limit is None or args.ttl <= limit:
        return None
    too_long = f"{lifetime_text(args.ttl)} is longer than NOTIFIER_TOKEN_MAX_LIFETIME"
    return usage_error(args, "--ttl", f"{too_long} ({lifetime_text(limit)})")


def cmd_create(settings: Settings, args: argparse.Namespace) -> int:
    """Create a token and print its secret, once."""
    if (refused := _ttl_refused(args, settings)) is not None:
        return refused
    if args.no_expiry and settings.token_max_lifetime is not None:
        limit = lifetime_text(settings.token_max_lifetime)
        return usage_error(
            args, "--no-expiry", f"tokens live at most {limit} (NOTIFIER_TOKEN_MAX_LIFETIME)"
        )
    with opened(settings) as parts:
        now = parts.clock.now()
        if args.no_expiry:
            expires_at = None
        else:
            expires_at = args.expires_at or now + (args.ttl or settings.token_default_ttl)
        try:
            created = parts.tokens.create(
                name=args.name,
                expires_at=expires_at,
                role=args.role,
                permissions=args.permission or [],
                owner=args.owner,
                labels=dict(parse_label(text) for text in args.label or []),
                description=args.description,
                actor=os_actor(),
            )
        except TokenInputError as error:
            return _refused(args, error)
    _show_created(created, as_json=args.json, verb="Created")
    return exitcodes.OK


_TOKEN_HEADERS = ("ID", "NAME", "ROLE", "OWNER", "EXPIRES", "DAYS LEFT", "STATUS")


def _token_row(token: TokenResource) -> list[str]:
    return [
        token.id,
        escape(token.name),
        escape(token.role or "-"),
        escape(token.owner or "-"),
        table_time(token.expires_at, "never"),
        "-" if token.days_left is None else str(token.days_left),
        token.status,
    ]


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    """List tokens with days left and status, streamed: filters, sorts and pages in SQL."""
    from notifier.tokens.listing import (  # noqa: PLC0415 - the store's, for listings only
        DEFAULT_STATUSES,
        STATUSES,
        TokenFilter,
        label_filters,
        statuses_of,
    )

    if args.status:
        statuses = statuses_of(args.status)
    elif args.all:
        statuses = frozenset(STATUSES)
    elif args.revoked:
        statuses = frozenset({"revoked"})
    else:
        statuses = DEFAULT_STATUSES
    wanted = TokenFilter(
        statuses,
        owner=args.owner,
        labels=label_filters(args.label or []),
        expiring_within=args.expiring_within,
        search=args.search,
    )
    with opened(settings) as parts:
        tokens = parts.tokens.stream(wanted, sort=args.sort, limit=args.limit)
        write_list(args, tokens, _TOKEN_HEADERS, _token_row)
    return exitcodes.OK


def _status_argument(text: str) -> str:
    """A token status (``--status``), checked as the API checks ``status``."""
    from notifier.tokens.listing import STATUSES, statuses_of  # noqa: PLC0415 - when given

    try:
        statuses_of([text])
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(STATUSES)}") from None
    return text


def _sort_argument(text: str) -> str:
    """One of the list's sorts (``--sort``): a column, descending with a leading ``-``."""
    from notifier.tokens.listing import sort_choices  # noqa: PLC0415 - when given

    choices = sort_choices()
    if text not in choices:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(choices)}")
    return text


@_on_a_token
def cmd_get(settings: Settings, args: argparse.Namespace) -> int:
    """Show one token."""
    with opened(settings) as parts:
        token = parts.tokens.get(args.id)
    if args.json:
        print_json(token)
    else:
        _show_token(token)
    return exitcodes.OK


@_on_a_token
def cmd_revoke(settings: Settings, args: argparse.Namespace) -> int:
    """Revoke a token by id."""
    with opened(settings) as parts:
        revocation = parts.tokens.revoke_once(args.id, actor=os_actor())
    token = revocation.token
    if args.json:
        print_json(token)
    elif revocation.already_revoked:
        sys.stdout.write(
            f"Token {token.id} ({escape(token.name)}) was already revoked "
            f"at {table_time(token.revoked_at)}.\n"
        )
    else:
        sys.stdout.write(f"Revoked token {token.id} ({escape(token.name)}).\n")
    return exitcodes.OK


def _rotation_refused(args: argparse.Namespace, error: TokenInputError) -> int:
    if error.field == "grace":
        return usage_error(args, "--grace", error.reason)
    if error.field not in {"expires_at", "ttl"}:
        fail(str(error))  # the old token's own fields no longer pass today's checks
        return exitcodes.FAILURE
    if _lifetime_option(args) is None:
        # The new token would take the old one's lifetime, and that does not fit.
        return usage_error(args, None, f"the new token needs --ttl or --expires-at: {error.reason}")
    return _refused(args, error)


@_on_a_token
def cmd_rotate(settings: Settings, args: argparse.Namespace) -> int:
    """Issue a new secret for a token; revoke the old one now or after a grace period."""
    if (refused := _ttl_refused(args, settings)) is not None:
        return refused
    with opened(settings) as parts:
        try:
            created = parts.tokens.rotate(
                args.id,
                grace=args.grace,
                ttl=args.ttl,
                expires_at=args.expires_at,
                actor=os_actor(),
            )
        except TokenInputError as error:
            return _rotation_refused(args, error)
    if not args.json:
        old_until = "now" if not args.grace else f"after {format_duration(args.grace)}"
        sys.stderr.write(f"notifier: token {args.id} is revoked {old_until}.\n")
    _show_created(created, as_json=args.json, verb="Rotated into")
    return exitcodes.OK


@_on_a_token
def cmd_delete(settings: Settings, args: argparse.Namespace) -> int:
    """Remove a token's record; the audit trail keeps that it existed."""
    with opened(settings) as parts:
        token = parts.tokens.delete(args.id, actor=os_actor())
    sys.stdout.write(f"Deleted token {token.id} ({escape(token.name)}).\n")
    return exitcodes.OK


def _read_presented() -> str | None:
    """The secret to verify: NOTIFIER_TOKEN, else stdin (a prompt without echo on a terminal)."""
    from notifier.config.secrets import presented_token  # noqa: PLC0415

    from_env = presented_token()
    if from_env is not None:
        return from_env
    if sys.stdin.isatty():
        return getpass.getpass("Token: ")
    line = sys.stdin.readline()
    return line.strip() or None


def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    """Check a presented secret: valid (and which token), or invalid, expired, revoked."""
    if args.on_argv:
        fail(
            "refusing a token given as an argument (shell history and ps keep it); "
            "pipe it on stdin or set NOTIFIER_TOKEN"
        )
        return exitcodes.USAGE
    secret = _read_presented()
    if not secret:
        fail("no token given: pipe it on stdin or set NOTIFIER_TOKEN")
        return exitcodes.USAGE
    with opened(settings) as parts:
        result = parts.tokens.verify(secret)
    if args.json:
        print_json(result)
    elif result.valid:
        sys.stdout.write(
            f"valid: token {result.id} ({escape(result.name or '')}), "
            f"permissions {' '.join(result.permissions or []) or '-'}, "
            f"expires {table_time(result.expires_at, 'never')}\n"
        )
    elif result.id is not None:
        sys.stdout.write(f"{result.reason}: token {result.id} ({escape(result.name or '')})\n")
    else:
        sys.stdout.write("invalid: no such token\n")
    return exitcodes.OK if result.valid else exitcodes.FAILURE


def _lifetime(
    parser: argparse.ArgumentParser, *, default_help: str
) -> argparse._MutuallyExclusiveGroup:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--ttl", type=duration_argument, help=f"lifetime, e.g. 72h, 30d, 1h30m ({default_help})"
    )
    group.add_argument(
        "--expires-at",
        type=aware_time_argument,
        help="expiry as ISO 8601 with a zone, e.g. 2027-01-31T12:00Z",
    )
    return group


def add_commands(commands: Any) -> Any:
    """Add ``tokens`` to the top-level subparsers; return its subparsers."""
    tokens = commands.add_parser(
        "tokens", help="create, list, rotate, revoke, verify, import and export tokens"
    )
    sub = tokens.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _add_create(sub)
    _add_reading(sub)
    _add_changes(sub)
    add_transfer_commands(sub)
    return sub


def _add_create(sub: Any) -> None:
    create = sub.add_parser("create", help="create a token; its secret is shown once")
    create.add_argument("--name", required=True, help="what the token is for")
    create.add_argument("--role", help="the role it acts as")
    create.add_argument(
        "--permission",
        action="append",
        metavar="SCOPE",
        help="a permission; repeat for several; * means all",
    )
    create.add_argument("--owner", help="who to tell when it expires (an email or a name)")
    create.add_argument(
        "--label", action="append", metavar="KEY=VALUE", help="a label; repeat for several"
    )
    create.add_argument("--description", help="free text")
    lifetime = _lifetime(create, default_help="default: NOTIFIER_TOKEN_DEFAULT_TTL")
    lifetime.add_argument(
        "--no-expiry", action="store_true", help="never expires (only when asked for)"
    )
    create.add_argument("--json", action="store_true", help="print JSON with the secret")
    create.set_defaults(handler=cmd_create, parser=create)


def _add_reading(sub: Any) -> None:
    listing = sub.add_parser(
        "list",
        help="list tokens with days left and status",
        description=(
            "List tokens, soonest expiry first, streamed: rows print as they are read. "
            "The filters are those of GET /api/v1/tokens; each one given narrows the list."
        ),
    )
    listing.add_argument(
        "--expiring-within",
        type=duration_argument,
        metavar="DURATION",
        help="only tokens that expire within this time, e.g. 168h",
    )
    which = listing.add_mutually_exclusive_group()
    which.add_argument(
        "--status",
        action="append",
        type=_status_argument,
        metavar="STATUS",
        help=(
            "only tokens of this status: active, expiring, expired, revoked or superseded; "
            "repeat for several (default: all but revoked)"
        ),
    )
    which.add_argument("--revoked", action="store_true", help="only revoked tokens")
    which.add_argument("--all", action="store_true", help="revoked tokens too")
    listing.add_argument("--owner", help="only this owner's tokens (the exact owner)")
    listing.add_argument(
        "--label",
        action="append",
        type=label_argument,
        metavar="KEY=VALUE",
        help="only tokens with this label; repeat for several (each must match)",
    )
    listing.add_argument(
        "--search",
        metavar="TEXT",
        help="only tokens whose name (in any case) or id starts with TEXT",
    )
    listing.add_argument(
        "--sort",
        type=_sort_argument,
        default="expires_at",
        metavar="ORDER",
        help=(
            "expires_at (the default), name or created_at; a leading - sorts descending: "
            "--sort=-name"
        ),
    )
    add_list_options(listing, what="tokens")
    listing.set_defaults(handler=cmd_list)

    get = sub.add_parser("get", help="show one token")
    get.add_argument("id", help="the token id")
    get.add_argument("--json", action="store_true", help="print JSON")
    get.set_defaults(handler=cmd_get)

    verify = sub.add_parser(
        "verify", help="check a secret read from stdin or NOTIFIER_TOKEN (never from arguments)"
    )
    verify.add_argument("--json", action="store_true", help="print JSON")
    # Caught here so that argparse does not echo a secret given by mistake.
    verify.add_argument("on_argv", nargs="*", help=argparse.SUPPRESS)
    verify.set_defaults(handler=cmd_verify)


def _add_changes(sub: Any) -> None:
    revoke = sub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id", help="the token id")
    revoke.add_argument("--json", action="store_true", help="print the token as JSON")
    revoke.set_defaults(handler=cmd_revoke)

    rotate = sub.add_parser("rotate", help="new secret, same name, role, scopes, owner and labels")
    rotate.add_argument("id", help="the token id")
    rotate.add_argument(
        "--grace",
        type=non_negative_duration_argument,
        default=non_negative_duration_argument("0"),
        metavar="DURATION",
        help="keep the old secret working this long (default: revoke it now)",
    )
    _lifetime(rotate, default_help="default: the old token's lifetime")
    rotate.add_argument("--json", action="store_true", help="print JSON with the new secret")
    rotate.set_defaults(handler=cmd_rotate, parser=rotate)

    remove = sub.add_parser("delete", help="remove a token's record (the audit trail keeps it)")
    remove.add_argument("id", help="the token id")
    remove.set_defaults(handler=cmd_delete)
