"""schemathesis against /openapi.json: generated requests, valid and not, never a server error.

The app is the real one over a SQLite file, called through ASGI; the rate limit is raised and
the failure throttle is off for the run (schemathesis sends hundreds of requests with one
token, many with a wrong one), and the event stream is left out, since a stream never ends and
the ASGI transport waits for the end of a body.

Every schemathesis check runs but one: ``positive_data_acceptance`` expects any request the
document allows to succeed, and some rules cannot be said in JSON Schema (a name without
control characters, a duration above zero and below a century, an expiry in the future).
Those requests get a 422 naming the field, which the other checks accept as documented.

The runs are reproducible: schemathesis's own seed (its config's ``seed``) is fixed, so every
run of ``make test`` sends the same requests. ``NOTIFIER_TEST_EXPLORE=1`` draws a fresh seed
for the session, to look for new failures. Each operation mixes the seed with its label, as
schemathesis's pytest plugin does, and a failure names the seed and the command that replays
it (``--hypothesis-seed=<seed>``, which also picks the seed here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import derive_operation_seed

from tests.conftest import exploring
from tests.web_tier import DAY, Web, WebFactory

STREAM = "/api/v1/notifications/stream"
FIXED_SEED = 20260101  # the seed every run uses unless told to explore; any number would do


def generation_seed(config: pytest.Config) -> int:
    """The schemathesis seed of this session: given, drawn when exploring, else fixed."""
    given_seed = config.getoption("--hypothesis-seed", None)
    if given_seed is not None:
        return int(given_seed)
    if exploring():
        return SchemathesisConfig().seed  # 128 random bits
    return FIXED_SEED


@pytest.fixture(scope="session")
def seed(pytestconfig: pytest.Config) -> int:
    """One seed for the whole session, so that a failure's seed replays every operation."""
    return generation_seed(pytestconfig)


@dataclass(frozen=True)
class Target:
    web: Web
    secret: str


@pytest.fixture
def target(make_web: WebFactory) -> Target:
    """The app with a '*' token, a token about to expire and its notification."""
    # Both limits off: schemathesis sends hundreds of requests, many with a wrong token, from
    # one (unknown) address; test_web_api.py covers the limits.
    web = make_web(NOTIFIER_API_RATE_LIMIT="1000000", NOTIFIER_API_AUTH_FAILURE_LIMIT="0")
    web.token(name="ci-deploy", ttl=2 * DAY)
    web.parts.checker.run()
    # Without an expiry of its own, so that it may create and rotate tokens of any lifetime.
    return Target(web=web, secret=web.token("*", name="admin", ttl=None).token)


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
    ("GET", "/api/v1/tokens/summary"),
    ("GET", "/api/v1/audit"),
    ("GET", "/api/v1/deliveries"),
    ("GET", "/api/v1/credentials"),
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
def test_no_server_errors(
    *,
    target: Target,
    seed: int,
    request: pytest.FixtureRequest,
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    """Generated requests, valid and not, get no 5xx and answer as the document says."""
    # The token goes in through schemathesis's own auth config, not as a header added to each
    # call: a negative case whose invalid part was the Authorization header it generated would
    # otherwise be sent with a valid one, and its 200 counted as accepting invalid data.
    config = SchemathesisConfig.from_dict(
        {"seed": seed, "auth": {"openapi": {"HTTPBearer": {"bearer": target.secret}}}}
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", target.web.app, config=config)
    operation = schema[path][method]
    operation_seed = derive_operation_seed(schema.config.seed, f"{operation.label} {mode.value}")

    @hypothesis.seed(operation_seed)
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=50,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(excluded_checks=[positive_data_acceptance])

    try:
        run()
    except BaseException as failure:
        failure.add_note(
            f"schemathesis seed {schema.config.seed}; replay with: "
            f"pytest '{request.node.nodeid}' --hypothesis-seed={schema.config.seed}"
        )
        raise


def test_the_seed_is_fixed_unless_exploring(
    pytestconfig: pytest.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every run uses one seed; NOTIFIER_TEST_EXPLORE=1 draws a new one each time."""
    if pytestconfig.getoption("--hypothesis-seed", None) is not None:
        pytest.skip("--hypothesis-seed chooses the seed")
    monkeypatch.delenv("NOTIFIER_TEST_EXPLORE", raising=False)
    assert generation_seed(pytestconfig) == generation_seed(pytestconfig) == FIXED_SEED
    monkeypatch.setenv("NOTIFIER_TEST_EXPLORE", "1")
    assert generation_seed(pytestconfig) != generation_seed(pytestconfig)


def test_the_document_covers_the_api(target: Target) -> None:
    """/openapi.json lists every endpoint with both ways of presenting a token."""
    from tests.web_tier import ApiClient  # noqa: PLC0415

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
        "/api/v1/credentials",
        "/healthz",
        "/readyz",
    } <= paths
    assert set(document["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyHeader"}
