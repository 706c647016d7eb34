"""A notice's construction and its stable id: what the policy hands a sink.

Pure, as the policy is.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from notifier.core.model import DeliveryState, Notice, NoticeKind, WatchedToken

__all__ = ["build_notice", "notice_id"]


def build_notice(
    token: WatchedToken,
    state: DeliveryState,
    sink: str,
    kind: NoticeKind,
    *,
    id_expiry: datetime | None,
    threshold: timedelta | None = None,
    threshold_label: str | None = None,
    days: int = 0,
    seconds: int = 0,
    reason: str | None = None,
) -> Notice:
    """A notice about *token* for *sink*, numbered by the state's count of notices."""
    return Notice(
        id=notice_id(
            source=token.source,
            token_id=token.token_id,
            sink=sink,
            kind=kind,
            threshold=threshold,
            expires_at=id_expiry,
            ordinal=state.notices_sent,
        ),
        kind=kind,
        sink=sink,
        source=token.source,
        token_id=token.token_id,
        token_name=token.name,
        owner=token.owner,
        expires_at=token.expires_at,
        days_left=days,
        seconds_left=seconds,
        threshold=threshold,
        threshold_label=threshold_label,
        labels=token.labels,
        reason=reason,
        credential_kind=token.credential_kind,
    )


def notice_id(
    *,
    source: str,
    token_id: str,
    sink: str,
    kind: NoticeKind,
    threshold: timedelta | None,
    expires_at: datetime | None,
    ordinal: int,
) -> str:
    """Hash the notice's identity into a stable id.

    DESIGN.md's key is (source, token id, sink, kind, threshold, expires_at). The ordinal (how
    many notices this sink already received for this expiry) is added so that tomorrow's
    reminder is a new notice for receivers that deduplicate, while a retry of today's, which
    has not been recorded as sent, keeps its id.
    """
    threshold_part = "" if threshold is None else str(int(threshold.total_seconds()))
    expiry_part = "" if expires_at is None else expires_at.isoformat()
    key = "\x1f".join(
        [source, token_id, sink, kind.value, threshold_part, expiry_part, str(ordinal)]
    )
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
