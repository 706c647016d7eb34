"""The notification routes of ``/api/v1``: list, acknowledge, the live stream; deliveries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from notifier.delivery.ledger.deliveries import page_deliveries
from notifier.notifications import NotificationNotFoundError, acknowledge, page_notifications
from notifier.resources import DeliveryResource, NotificationResource
from notifier.web.api import WebApi
from notifier.web.auth import NotificationReader, NotificationWriter
from notifier.web.errors import NOT_FOUND, ApiProblem, missing_as_404
from notifier.web.routes.paging import DEFAULT_PAGE, PAGED, Cursor, Limit, paged
from notifier.web.stream import (
    InvalidCursorError,
    NotificationStream,
    SlotStreamingResponse,
    parse_event_id,
)

_STREAM_RETRY_S = 30  # Retry-After for a token that already holds its streams


def notification_routes(api: WebApi) -> APIRouter:
    """The notification routes, the stream among them."""
    router = APIRouter(tags=["notifications"])

    @router.get(
        "/notifications",
        summary="UI notifications, most urgent first, a page at a time (notifications:read)",
        responses=PAGED,
    )
    def notifications(
        *,
        principal: NotificationReader,
        request: Request,
        response: Response,
        active: Annotated[
            bool | None,
            Query(description="true: only active ones; false: only acknowledged or resolved"),
        ] = None,
        limit: Limit = DEFAULT_PAGE,
        cursor: Cursor = None,
    ) -> list[NotificationResource]:
        del principal
        return paged(
            request,
            response,
            lambda: page_notifications(api.database, active=active, limit=limit, cursor=cursor),
        )

    @router.get(
        "/deliveries",
        tags=["deliveries"],
        summary="What each sink heard about each token, by token (notifications:read)",
        responses=PAGED,
    )
    def deliveries(
        *,
        principal: NotificationReader,
        request: Request,
        response: Response,
        sink: Annotated[str | None, Query(max_length=64, description="only this sink")] = None,
        failed: Annotated[bool, Query(description="only those whose last attempts failed")] = False,
        limit: Limit = DEFAULT_PAGE,
        cursor: Cursor = None,
    ) -> list[DeliveryResource]:
        del principal
        return paged(
            request,
            response,
            lambda: page_deliveries(
                api.database, sink=sink, failed_only=failed, limit=limit, cursor=cursor
            ),
        )

    @router.post(
        "/notifications/{notification_id}/ack",
        summary="Acknowledge until the next notice (scope notifications:write)",
        responses=NOT_FOUND,
    )
    def acknowledge_notification(
        notification_id: str,
        principal: NotificationWriter,
    ) -> NotificationResource:
        with missing_as_404(NotificationNotFoundError):
            return acknowledge(
                api.database, notification_id, now=api.clock.now(), actor=principal.actor
            )

    @router.get(
        "/notifications/stream",
        summary="Server-Sent Events: new and changed notifications (notifications:read)",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "An event stream: ready, then notification events",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        },
    )
    def stream(
        principal: NotificationReader,
        last_event_id: Annotated[str | None, Header(max_length=64)] = None,
    ) -> StreamingResponse:
        try:
            resume_from = parse_event_id(last_event_id, now=api.clock.now())
        except InvalidCursorError as error:
            raise ApiProblem(
                400, "invalid_cursor", f"last-event-id: {error}", field="last-event-id"
            ) from None
        key = principal.rate_key
        if not api.streams.take(key):
            raise ApiProblem(
                429,
                "rate_limited",
                f"this token already holds {api.streams.limit} open streams "
                f"(NOTIFIER_API_MAX_STREAMS_PER_TOKEN); close one, or retry in "
                f"{_STREAM_RETRY_S}s",
                headers={"Retry-After": str(_STREAM_RETRY_S)},
            )
        try:
            stream = NotificationStream(api, principal)
            watch = stream.start(resume_from)
        except BaseException:
            api.streams.give_back(key)
            raise
        return SlotStreamingResponse(
            stream.events(watch),
            release=lambda: api.streams.give_back(key),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return router
