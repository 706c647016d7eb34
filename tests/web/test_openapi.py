"""schemathesis against /openapi.json: generated requests, valid and not, never a server error.

The app is the real one over a SQLite file, called through ASGI; the rate limit is raised for
the run (schemathesis sends hundreds of requests with one token), and the event stream is left
out, since a stream never ends and the ASGI transport waits for the end of a body.

Every schemathesis check runs but one: ``positive_data_acceptance`` expects any request the
document allows to succeed, and some rules cannot be said in JSON Schema (a name without
control characters, a duration above zero and below a century, an expiry in the future).
Those requests get a 422 naming the field, which the other checks accept as documented.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from .conftest import DAY, Web, WebFactory

STREAM = "/api/v1/notifications/stream"


@dataclass(frozen=True)
class Target:
    web: Web
    secret: str


@pytest.fixture
def target(make_web: WebFactory) -> Target:
    """The app with a '*' token, a token about to expire and its notification."""
    web = make_web(NOTIFIER_API_RATE_LIMIT="1000000")
    web.token(name="ci-deploy", ttl=2 * DAY)
    web.parts.checker.run()
    return Target(web=web, secret=web.token("*", name="admin").token)


# Every operation of the document but the stream: (method, path). The first three take no
# input at all, so only valid requests can be generated for them.
WITHOUT_INPUT = [("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/api/v1/auth/whoami")]
OPERATIONS = [
    *WITHOUT_INPUT,
    ("GET", "/api/v1/tokens"),
    ("POST", "/api/v1/tokens"),
    ("GET", "/api/v1/tokens/expiring"),
    ("GET", "/api/v1/tokens/{token_id}"),
    ("DELETE", "/api/v1/tokens/{token_id}"),
    ("POST", "/api/v1/tokens/{token_id}/rotate"),
    ("GET", "/api/v1/notifications"),
    ("POST", "/api/v1/notifications/{notification_id}/ack"),
]


# schemathesis's own pytest integration (from_fixture) does not run on pytest 9 yet, so each
# operation's strategy is driven by Hypothesis directly; the checks are schemathesis's.
CASES = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode.value}")
    for method, path in OPERATIONS
    for mode in GenerationMode
    if mode is GenerationMode.POSITIVE or (method, path) not in WITHOUT_INPUT
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_no_server_errors(target: Target, method: str, path: str, mode: GenerationMode) -> None:
    """Generated requests, valid and not, get no 5xx and answer as the document says."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", target.web.app)
    operation = schema[path][method]
    headers = {"Authorization": f"Bearer {target.secret}"}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=50,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

    run()


def test_the_document_covers_the_api(target: Target) -> None:
    """/openapi.json lists every endpoint with both ways of presenting a token."""
    from .conftest import ApiClient  # noqa: PLC0415

    document = ApiClient(target.web.app, None, "127.0.0.1", "bearer").get("/openapi.json").json()
    paths = set(document["paths"])
    assert {
        "/api/v1/tokens",
        "/api/v1/tokens/expiring",
        "/api/v1/tokens/{token_id}",
        "/api/v1/tokens/{token_id}/rotate",
        "/api/v1/notifications",
        "/api/v1/notifications/{notification_id}/ack",
        STREAM,
        "/api/v1/auth/whoami",
        "/healthz",
        "/readyz",
    } <= paths
    assert set(document["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyHeader"}
