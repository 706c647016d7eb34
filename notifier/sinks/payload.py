"""The JSON body a webhook receives: documented by docs/webhook-payload.schema.json."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from notifier.core.durations import format_duration
from notifier.core.messages import sentence
from notifier.core.model import Notice, NoticeKind
from notifier.runtime.logs import rfc3339

SCHEMA_VERSION = 1
# A sink's window is the same for each of its notices: its text is worked out once.
_window_text = lru_cache(maxsize=16)(format_duration)
_STATUS = {
    NoticeKind.EXPIRING: "expiring",
    NoticeKind.EXPIRED: "expired",
    NoticeKind.RENEWED: "active",
    NoticeKind.RESOLVED: "revoked",
}


def payload(
    notice: Notice, *, sent_at: datetime, window: timedelta, slice_name: str
) -> dict[str, Any]:
    """The webhook body for *notice*."""
    status = _STATUS[notice.kind]
    if notice.kind is NoticeKind.RENEWED and notice.reason == "rotated":
        status = "superseded"
    return {
        "schema_version": SCHEMA_VERSION,
        "type": f"token.{notice.kind.value}",
        "id": notice.id,
        "kind": notice.kind.value,
        "message": sentence(notice, slice_name),
        "sent_at": rfc3339(sent_at),
        "token": {
            "id": notice.token_id,
            "name": notice.token_name,
            "source": notice.source,
            "kind": notice.credential_kind.value,
            "owner": notice.owner,
            "labels": dict(notice.labels),
            "expires_at": rfc3339(notice.expires_at) if notice.expires_at else None,
            "status": status,
        },
        "days_left": notice.days_left,
        "seconds_left": notice.seconds_left,
        "threshold": notice.threshold_label,
        "threshold_seconds": (
            int(notice.threshold.total_seconds()) if notice.threshold is not None else None
        ),
        "window": _window_text(window),
        "window_seconds": int(window.total_seconds()),
        "reason": notice.reason,
    }
