"""Commands about delivery: sinks test, deliveries list, notifications ack, snooze."""

from __future__ import annotations

import argparse
import itertools
import sys
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from notifier import exitcodes
from notifier.audit import os_actor
from notifier.cli.output import (
    add_list_options,
    aware_time_argument,
    duration_argument,
    fail,
    opened,
    print_table,
    table_time,
    usage_error,
    write_list,
)
from notifier.config.settings import Settings
from notifier.core.limits import MAX_LIFETIME_TEXT, time_in_range
from notifier.core.messages import escape
from notifier.core.model import Notice, NoticeKind, WatchedToken
from notifier.core.notices import notice_id
from notifier.core.policy import days_left

if TYPE_CHECKING:
    from notifier.resources import DeliveryResource  # pydantic models, for `deliveries` only

TEST_TOKEN_ID = "notifier-test"  # noqa: S105 - an id, not a secret


def cmd_sinks_test(settings: Settings, args: argparse.Namespace) -> int:
    """Send a test notice through one sink or all, and say what each answered."""
    with opened(settings) as parts:
        sinks = [sink for sink in parts.sinks if args.name in (None, sink.name)]
        if not sinks:
            names = ", ".join(sink.name for sink in parts.sinks)
            fail(f"no sink named {args.name!r} (configured: {names})")
            return exitcodes.USAGE
        now = parts.clock.now()
        expires_at = now + timedelta(days=3)
        answers: list[tuple[str, str]] = []
        for sink in sinks:
            if sink.name.split(":", 1)[0] == "ui":
                answers.append((sink.name, "skipped: test notices are not stored in the UI"))
                continue
            notice = Notice(
                id="test-"
                + notice_id(
                    source="test",
                    token_id=TEST_TOKEN_ID,
                    sink=sink.name,
                    kind=NoticeKind.EXPIRING,
                    threshold=None,
                    expires_at=now,
                    ordinal=0,
                )[:27],
                kind=NoticeKind.EXPIRING,
                sink=sink.name,
                source="test",
                token_id=TEST_TOKEN_ID,
                token_name="notifier test notice",  # noqa: S106 - a name, not a secret
                owner=args.owner,
                expires_at=expires_at,
                days_left=days_left(expires_at, now, settings.log_slice),
                seconds_left=int((expires_at - now).total_seconds()),
                threshold=None,
            )
            try:
                (outcome,) = sink.deliver([notice])
            except Exception as error:  # noqa: BLE001 - report, don't crash: this is a test
                answers.append((sink.name, f"crashed: {type(error).__name__}: {error}"))
                continue
            if outcome.ok:
                answers.append((sink.name, "ok"))
            else:
                kind = "permanent" if outcome.permanent else "transient"
                answers.append((sink.name, f"failed ({kind}): {outcome.error}"))
    print_table(["SINK", "ANSWER"], [list(answer) for answer in answers])
    failed = any(answer.startswith(("failed", "crashed")) for _, answer in answers)
    return exitcodes.FAILURE if failed else exitcodes.OK


_DELIVERY_HEADERS = (
    "SOURCE",
    "TOKEN",
    "SINK",
    "LAST",
    "LAST SENT",
    "ATTEMPTS",
    "NEXT",
    "LAST ERROR",
)


def _delivery_row(delivery: DeliveryResource) -> list[str]:
    from notifier.delivery.ledger import EPOCH  # noqa: PLC0415

    # EPOCH is the stored "due at once" (after an unsnooze, or a changed policy).
    if delivery.next_due_at is not None and delivery.next_due_at <= EPOCH:
        next_due = "now"
    else:
        next_due = table_time(delivery.next_due_at)
    return [
        delivery.source,
        delivery.token_id,
        delivery.sink,
        delivery.last_kind or "-",
        table_time(delivery.last_sent_at),
        str(delivery.attempts),
        next_due,
        escape(delivery.last_error or "-"),
    ]


def cmd_deliveries_list(settings: Settings, args: argparse.Namespace) -> int:
    """Show the state per (token, sink), as it is read: last sent, attempts, last error."""
    from notifier.delivery.ledger.deliveries import stream_deliveries  # noqa: PLC0415

    with opened(settings) as parts:
        deliveries = stream_deliveries(
            parts.database, sink=args.sink, failed_only=args.failed, limit=args.limit
        )
        first = next(deliveries, None)
        configured = [config.name for config in settings.sink_configs]
        # A sink no longer configured may still have state worth seeing; a typo has none.
        if args.sink is not None and args.sink not in configured and first is None:
            fail(f"no sink named {args.sink!r} (configured: {', '.join(configured)})")
            return exitcodes.USAGE
        listed = deliveries if first is None else itertools.chain([first], deliveries)
        write_list(args, listed, _DELIVERY_HEADERS, _delivery_row)
    return exitcodes.OK


def cmd_notifications_ack(settings: Settings, args: argparse.Namespace) -> int:
    """Hide a UI notification until the next notice for its token."""
    from notifier.notifications import NotificationNotFoundError, acknowledge  # noqa: PLC0415

    with opened(settings) as parts:
        try:
            notification = acknowledge(
                parts.database, args.id, now=parts.clock.now(), actor=os_actor()
            )
        except NotificationNotFoundError as error:
            fail(error.args[0])
            return exitcodes.FAILURE
    sys.stdout.write(f"Acknowledged {notification.id}: {notification.message}\n")
    return exitcodes.OK


def cmd_snooze(settings: Settings, args: argparse.Namespace) -> int:  # noqa: PLR0911 - a return per refusal
    """Silence a token's notices until a time, for a while, or until the next threshold."""
    from notifier.delivery.snoozes import snooze  # noqa: PLC0415
    from notifier.tokens.lifecycle import TokenNotFoundError  # noqa: PLC0415

    with opened(settings) as parts:
        now = parts.clock.now()
        name: str | None = None
        threshold: timedelta | None = None
        if args.source == "store":
            try:
                token = parts.tokens.get(args.id)
            except TokenNotFoundError as error:
                fail(error.args[0])
                return exitcodes.FAILURE
            name = token.name
            if args.until_next_threshold and not parts.policy.thresholds:
                fail("no thresholds are configured (NOTIFIER_THRESHOLDS); snooze it --for a while")
                return exitcodes.FAILURE
            if args.until_next_threshold:
                zone = parts.policy.zone(
                    WatchedToken(
                        source="store",
                        token_id=token.id,
                        name=token.name,
                        expires_at=token.expires_at,
                        revoked_at=token.revoked_at,
                        created_at=token.created_at,
                    ),
                    now,
                )
                if not zone.inside or zone.before_expiry is None:
                    fail("the token is not inside a threshold now; snooze it --for a while")
                    return exitcodes.FAILURE
                threshold = zone.before_expiry
        elif args.until_next_threshold:
            fail("--until-next-threshold needs a store token; use --for or --until")
            return exitcodes.USAGE
        configured = [config.name for config in settings.sink_configs]
        if args.sink is not None and args.sink not in configured:
            fail(f"no sink named {args.sink!r} (configured: {', '.join(configured)})")
            return exitcodes.USAGE
        if args.until is not None and not time_in_range(args.until, now=now):
            return usage_error(
                args,
                "--until",
                f"{args.until.isoformat()} is not between 1970 and {MAX_LIFETIME_TEXT} from now",
            )
        until = args.until or (now + args.duration if args.duration else None)
        result = snooze(
            parts.database,
            source=args.source,
            token_id=args.id,
            token_name=name,
            sink=args.sink,
            until=until,
            threshold=threshold,
            now=now,
            actor=os_actor(),
        )
    scope = f"for sink {result.sink}" if result.sink else "for every sink"
    end = f"until {table_time(result.until)}" if result.until else "until its next threshold"
    sys.stdout.write(f"Snoozed {args.source}/{args.id} {scope} {end}.\n")
    return exitcodes.OK


def cmd_unsnooze(settings: Settings, args: argparse.Namespace) -> int:
    """Lift a token's snoozes."""
    from notifier.delivery.snoozes import unsnooze  # noqa: PLC0415

    with opened(settings) as parts:
        removed = unsnooze(
            parts.database,
            source=args.source,
            token_id=args.id,
            sink=args.sink,
            now=parts.clock.now(),
            actor=os_actor(),
        )
    sys.stdout.write(f"Removed {removed} snooze(s) from {args.source}/{args.id}.\n")
    return exitcodes.OK


def add_commands(commands: Any, tokens: Any, notifications: Any) -> None:
    """Add ``sinks``, ``deliveries``, ``notifications ack`` and ``tokens snooze``."""
    sinks = commands.add_parser("sinks", help="the configured sinks")
    sinks_sub = sinks.add_subparsers(title="commands", metavar="COMMAND", required=True)
    test = sinks_sub.add_parser("test", help="send a test notice through one sink or all")
    test.add_argument("name", nargs="?", help="the sink (default: every sink)")
    test.add_argument("--owner", help="the owner the test token claims (email routing)")
    test.set_defaults(handler=cmd_sinks_test)

    deliveries = commands.add_parser("deliveries", help="delivery state per (token, sink)")
    deliveries_sub = deliveries.add_subparsers(title="commands", metavar="COMMAND", required=True)
    listing = deliveries_sub.add_parser("list", help="last sent, attempts, last error")
    listing.add_argument("--sink", help="only this sink")
    listing.add_argument("--failed", action="store_true", help="only pairs whose last try failed")
    add_list_options(listing, what="pairs")
    listing.set_defaults(handler=cmd_deliveries_list)

    ack = notifications.add_parser("ack", help="hide a notification until its next notice")
    ack.add_argument("id", help="the notification id")
    ack.set_defaults(handler=cmd_notifications_ack)

    snooze = tokens.add_parser("snooze", help="silence a token's notices for a while")
    snooze.add_argument("id", help="the token id")
    snooze.add_argument("--source", default="store", help="the token's source (default: store)")
    snooze.add_argument("--sink", help="only this sink (default: every sink)")
    end = snooze.add_mutually_exclusive_group(required=True)
    end.add_argument("--for", dest="duration", type=duration_argument, help="e.g. 3d")
    end.add_argument("--until", type=aware_time_argument, help="ISO 8601 time with a zone")
    end.add_argument(
        "--until-next-threshold", action="store_true", help="until it enters a tighter threshold"
    )
    snooze.set_defaults(handler=cmd_snooze, parser=snooze)

    unsnooze = tokens.add_parser("unsnooze", help="lift a token's snoozes")
    unsnooze.add_argument("id", help="the token id")
    unsnooze.add_argument("--source", default="store", help="the token's source")
    unsnooze.add_argument("--sink", help="only this sink's snooze")
    unsnooze.set_defaults(handler=cmd_unsnooze)
