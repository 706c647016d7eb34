"""The HTTP API against the real app and a real database: every endpoint, every refusal."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select
from structlog.testing import capture_logs

from notifier.audit import list_events
from notifier.db.models import Token
from tests.web_tier import DAY, ApiClient, Web, WebFactory

V1 = "/api/v1"


def assert_error(response: object, status: int, code: str, field: str | None = None) -> dict:  # type: ignore[type-arg]
    """The answer is an ApiError with this status, code and field, and no traceback."""
    import httpx  # noqa: PLC0415

    assert isinstance(response, httpx.Response)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "message", "field"}
    assert body["error"] == code
    assert body["field"] == field
    assert "Traceback" not in response.text
    return body  # type: ignore[no-any-return]


# --- authentication: 401 ----------------------------------------------------------------------


class TestAuthentication:
    def test_no_token_is_401_with_a_challenge(self, web: Web) -> None:
        """A request without a token gets 401, a JSON error and WWW-Authenticate: Bearer."""
        response = web.client().get(f"{V1}/tokens")
        assert_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == 'Bearer realm="notifier"'

    @pytest.mark.parametrize(
        "secret",
        [
            "ntf_" + "0" * 48,  # our shape, wrong checksum: refused before any lookup
            "ntf_3f9c1d0e7a2b4c6d8e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b",  # our shape, unknown
            "not-a-token-at-all",  # any other text
        ],
    )
    def test_unknown_token_is_401(self, web: Web, secret: str) -> None:
        """A secret that matches no stored token gets 401 with error="invalid_token"."""
        response = web.client(secret).get(f"{V1}/tokens")
        assert_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == (
            'Bearer realm="notifier", error="invalid_token"'
        )

    def test_expired_token_is_401(self, web: Web) -> None:
        """A token past its expiry gets 401 saying it expired."""
        token = web.token("*", ttl=DAY)
        web.clock.advance(2 * DAY)
        body = assert_error(web.client(token).get(f"{V1}/tokens"), 401, "unauthorized")
        assert body["message"] == "the token has expired"

    def test_revoked_token_is_401(self, web: Web) -> None:
        """A revoked token gets 401 saying it was revoked."""
        token = web.token("*")
        web.parts.tokens.revoke(token.id)
        body = assert_error(web.client(token).get(f"{V1}/tokens"), 401, "unauthorized")
        assert body["message"] == "the token has been revoked"

    def test_other_authorization_schemes_are_401(self, web: Web) -> None:
        """Authorization: Basic is refused with 401 naming the Bearer scheme, and logged."""
        token = web.token("*")
        with capture_logs() as logs:
            response = web.client().get(
                f"{V1}/tokens", headers={"Authorization": f"Basic {token.token}"}
            )
        body = assert_error(response, 401, "unauthorized")
        assert "Bearer" in body["message"]
        assert [e["reason"] for e in logs if e["event"] == "auth.failed"] == ["unsupported_scheme"]
        assert token.token not in repr(logs)

    @pytest.mark.parametrize("header", ["bearer", "x-api-key"])
    def test_bearer_and_api_key_both_work(self, web: Web, header: str) -> None:
        """The token is accepted as Authorization: Bearer and as X-API-Key."""
        token = web.token("tokens:read")
        response = web.client(token, header=header).get(f"{V1}/auth/whoami")
        assert response.status_code == 200
        assert response.json()["id"] == token.id

    def test_failed_attempts_are_logged_without_the_secret(self, web: Web) -> None:
        """Failures log a fingerprint or the token id, and no piece of what was presented."""
        revoked = web.token("*")
        web.parts.tokens.revoke(revoked.id)
        unknown = "ntf_3f9c1d0e7a2b4c6d8e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b"
        with capture_logs() as logs:
            web.client(unknown).get(f"{V1}/tokens")
            web.client(revoked).get(f"{V1}/tokens")
        failures = [entry for entry in logs if entry["event"] == "auth.failed"]
        assert [entry["reason"] for entry in failures] == ["invalid", "revoked"]
        assert failures[0]["fingerprint"].startswith("sha256:")
        assert failures[1]["token_id"] == revoked.id
        assert all(entry["client"] == "127.0.0.1" for entry in failures)
        text = repr(logs)
        for secret in (unknown, revoked.token):
            body = secret.removeprefix("ntf_")
            pieces = {body[i : i + 8] for i in range(len(body) - 7)}
            assert not any(piece in text for piece in pieces)

    def test_a_database_that_stops_answering_is_503(self, web: Web, tmp_path: Path) -> None:
        """With the database gone after start-up, the API answers 503 with Retry-After."""
        client = web.admin()
        assert client.get(f"{V1}/tokens").status_code == 200
        shutil.rmtree(tmp_path / "db")  # the SQLite file's directory: no new connection opens
        web.parts.database.dispose()
        response = client.get(f"{V1}/tokens")
        assert_error(response, 503, "unavailable")
        assert response.headers["retry-after"] == "5"

    def test_health_metrics_and_page_need_no_token(self, web: Web) -> None:
        """/healthz, /readyz, /openapi.json and the page answer without a token."""
        client = web.client()
        for path in ("/healthz", "/readyz", "/openapi.json", "/"):
            assert client.get(path).status_code == 200, path

    def test_unknown_api_paths_are_401_before_404(self, web: Web) -> None:
        """Without a token, a path that does not exist is 401 too: routes are not probed."""
        assert_error(web.client().get(f"{V1}/secret-admin"), 401, "unauthorized")
        assert_error(web.admin().get(f"{V1}/secret-admin"), 404, "not_found")


class TestBootstrap:
    KEY = "bootstrap-0123456789abcdef0123456789abcdef"

    def test_bootstrap_key_has_every_scope_and_is_logged(self, make_web: WebFactory) -> None:
        """The bootstrap key works with every scope, each use is logged, and whoami says so."""
        web = make_web(NOTIFIER_BOOTSTRAP_TOKEN=self.KEY)
        with capture_logs() as logs:
            response = web.client(self.KEY).get(f"{V1}/auth/whoami")
        assert response.status_code == 200
        assert response.json()["name"] == "bootstrap"
        assert response.json()["permissions"] == ["*"]
        (used,) = [entry for entry in logs if entry["event"] == "auth.bootstrap_used"]
        assert used["log_level"] == "warning"
        assert self.KEY not in repr(logs)

    def test_bootstrap_creates_the_first_token_as_bootstrap(self, make_web: WebFactory) -> None:
        """A token created with the bootstrap key is audited with the actor 'bootstrap'."""
        web = make_web(NOTIFIER_BOOTSTRAP_TOKEN=self.KEY)
        response = web.client(self.KEY).post(
            f"{V1}/tokens", json={"name": "admin", "permissions": ["*"], "ttl": "30d"}
        )
        assert response.status_code == 201
        (created,) = list_events(web.parts.database, token_id=response.json()["id"])
        assert created.actor == "bootstrap"

    def test_without_the_setting_the_key_is_just_unknown(self, web: Web) -> None:
        """With NOTIFIER_BOOTSTRAP_TOKEN unset, the same text is an unknown token."""
        assert_error(web.client(self.KEY).get(f"{V1}/auth/whoami"), 401, "unauthorized")


# --- authorisation: 403 -----------------------------------------------------------------------

# (method, path, the scope it needs); {id} is a stored token, {nid} a notification.
SCOPED = [
    ("GET", "/tokens", "tokens:read"),
    ("GET", "/tokens/expiring", "tokens:read"),
    ("GET", "/tokens/{id}", "tokens:read"),
    ("POST", "/tokens", "tokens:write"),
    ("DELETE", "/tokens/{id}", "tokens:write"),
    ("POST", "/tokens/{id}/rotate", "tokens:write"),
    ("GET", "/notifications", "notifications:read"),
    ("GET", "/notifications/stream", "notifications:read"),
    ("POST", "/notifications/{nid}/ack", "notifications:write"),
]
OTHER_SCOPE = {
    "tokens:read": "notifications:read",
    "tokens:write": "tokens:read",
    "notifications:read": "tokens:read",
    "notifications:write": "notifications:read",
}


def warned(web: Web) -> str:
    """Run a pass over a token expiring in 2 days; return its notification's id."""
    web.token(name="ci-deploy", ttl=2 * DAY)
    web.parts.checker.run()
    (notification,) = web.client(web.token("*").token).get(f"{V1}/notifications").json()
    return str(notification["id"])


class TestAuthorisation:
    @pytest.mark.parametrize(("method", "path", "scope"), SCOPED)
    def test_missing_scope_is_403(self, web: Web, method: str, path: str, scope: str) -> None:
        """Each endpoint refuses a token without its scope with 403 naming the scope."""
        target = web.token("tokens:read", name="target")
        path = path.format(id=target.id, nid="n1")
        caller = web.token(OTHER_SCOPE[scope])
        json = {"name": "x"} if path == "/tokens" and method == "POST" else None
        response = web.client(caller).request(method, V1 + path, json=json)
        body = assert_error(response, 403, "forbidden")
        assert scope in body["message"]

    # The stream never ends, and httpx's ASGI transport waits for the end of a body: the
    # stream's own scope is checked over a socket in tests/acceptance/test_web_stream.py.
    @pytest.mark.parametrize(
        ("method", "path", "scope"), [row for row in SCOPED if not row[1].endswith("stream")]
    )
    def test_the_scope_is_enough(self, web: Web, method: str, path: str, scope: str) -> None:
        """Each endpoint admits its scope (plus tokens:read, which its target token holds)."""
        nid = warned(web)
        target = web.token("tokens:read", name="target")
        caller = web.token(scope, "tokens:read")
        json = {"name": "x", "permissions": ["tokens:read"]} if path == "/tokens" else None
        response = web.client(caller).request(
            method, V1 + path.format(id=target.id, nid=nid), json=json
        )
        assert response.status_code in {200, 201}, response.text

    def test_whoami_needs_no_scope(self, web: Web) -> None:
        """A token without any scope can still ask who it is, and sees no secret."""
        token = web.token()
        body = web.client(token).get(f"{V1}/auth/whoami").json()
        assert body == {
            "valid": True,
            "reason": "valid",
            "id": token.id,
            "name": "caller",
            "role": None,
            "permissions": [],
            "expires_at": "2026-01-31T00:00:00Z",
        }

    def test_a_disallowed_address_is_403_even_with_a_token(self, make_web: WebFactory) -> None:
        """Outside NOTIFIER_API_ALLOWED_IPS a valid token gets 403; inside it, 200."""
        web = make_web(NOTIFIER_API_ALLOWED_IPS="10.0.0.0/8")
        token = web.token("*")
        body = assert_error(
            web.client(token, address="192.0.2.7").get(f"{V1}/tokens"), 403, "forbidden"
        )
        assert "192.0.2.7" in body["message"]
        assert web.client(token, address="10.1.2.3").get(f"{V1}/tokens").status_code == 200

    def test_a_disallowed_address_still_reaches_health(self, make_web: WebFactory) -> None:
        """The allowlist covers the API only: probes and the page answer every address."""
        web = make_web(NOTIFIER_API_ALLOWED_IPS="10.0.0.0/8")
        client = web.client(address="192.0.2.7")
        assert client.get("/healthz").status_code == 200
        assert client.get("/").status_code == 200

    def test_forwarded_for_is_ignored_from_an_untrusted_peer(self, make_web: WebFactory) -> None:
        """X-Forwarded-For from a peer that is not a trusted proxy does not change the client."""
        web = make_web(NOTIFIER_API_ALLOWED_IPS="10.0.0.0/8")
        token = web.token("*")
        response = web.client(token, address="192.0.2.7").get(
            f"{V1}/tokens", headers={"X-Forwarded-For": "10.1.2.3"}
        )
        assert_error(response, 403, "forbidden")

    @pytest.mark.parametrize(
        ("forwarded_for", "status"),
        [
            ("10.1.2.3", 200),  # the proxy says the client is inside the allowlist
            ("203.0.113.9", 403),  # ... outside it
            ("10.1.2.3, 203.0.113.9", 403),  # the nearest hop is the client; the left is hearsay
            ("203.0.113.9, 10.1.2.3", 200),  # the client forged the left one; it is not read
            ("garbage", 403),  # a garbled hop: the proxy itself is the client, not allowed
        ],
    )
    def test_forwarded_for_is_believed_from_a_trusted_proxy(
        self, make_web: WebFactory, forwarded_for: str, status: int
    ) -> None:
        """Through NOTIFIER_TRUSTED_PROXIES, the nearest untrusted hop is the client."""
        web = make_web(
            NOTIFIER_API_ALLOWED_IPS="10.0.0.0/8", NOTIFIER_TRUSTED_PROXIES="192.0.2.0/24"
        )
        token = web.token("*")
        response = web.client(token, address="192.0.2.7").get(
            f"{V1}/tokens", headers={"X-Forwarded-For": forwarded_for}
        )
        assert response.status_code == status


# --- rate limit: 429 --------------------------------------------------------------------------


class TestRateLimit:
    def test_past_the_limit_is_429_with_retry_after(self, make_web: WebFactory) -> None:
        """The request after NOTIFIER_API_RATE_LIMIT in an hour gets 429 and Retry-After."""
        web = make_web(NOTIFIER_API_RATE_LIMIT="3")
        client = web.client(web.token("tokens:read"))
        assert [client.get(f"{V1}/tokens").status_code for _ in range(3)] == [200] * 3
        web.ticker.advance(600)
        response = client.get(f"{V1}/tokens")
        assert_error(response, 429, "rate_limited")
        assert response.headers["retry-after"] == "3000"

    def test_the_limit_is_per_token(self, make_web: WebFactory) -> None:
        """One token over its limit does not hold back another."""
        web = make_web(NOTIFIER_API_RATE_LIMIT="1")
        first, second = web.client(web.token("tokens:read")), web.client(web.token("tokens:read"))
        assert first.get(f"{V1}/tokens").status_code == 200
        assert first.get(f"{V1}/tokens").status_code == 429
        assert second.get(f"{V1}/tokens").status_code == 200

    def test_the_limit_rolls(self, make_web: WebFactory) -> None:
        """An hour after the first request, one more is allowed."""
        web = make_web(NOTIFIER_API_RATE_LIMIT="2")
        client = web.client(web.token("tokens:read"))
        client.get(f"{V1}/tokens")
        web.ticker.advance(1800)
        client.get(f"{V1}/tokens")
        assert client.get(f"{V1}/tokens").status_code == 429
        web.ticker.advance(1800)
        assert client.get(f"{V1}/tokens").status_code == 200
        assert client.get(f"{V1}/tokens").status_code == 429

    def test_rate_limited_requests_are_logged_with_the_token_id(self, make_web: WebFactory) -> None:
        """A 429 is logged as auth.rate_limited with the token id."""
        web = make_web(NOTIFIER_API_RATE_LIMIT="1")
        token = web.token("tokens:read")
        client = web.client(token)
        client.get(f"{V1}/tokens")
        with capture_logs() as logs:
            client.get(f"{V1}/tokens")
        (entry,) = [e for e in logs if e["event"] == "auth.rate_limited"]
        assert entry["token_id"] == token.id


# --- scope escalation -------------------------------------------------------------------------


class TestEscalation:
    def test_cannot_create_a_token_with_a_scope_it_lacks(self, web: Web) -> None:
        """A tokens:write token cannot create a tokens:read one; nothing is created."""
        client = web.client(web.token("tokens:write"))
        before = len(web.parts.tokens.list())
        body = assert_error(
            client.post(f"{V1}/tokens", json={"name": "x", "permissions": ["tokens:read"]}),
            403,
            "forbidden",
            "permissions",
        )
        assert "tokens:read" in body["message"]
        assert len(web.parts.tokens.list()) == before

    def test_cannot_create_a_star_token_without_star(self, web: Web) -> None:
        """Holding every named scope is not '*': asking for '*' is refused."""
        client = web.client(
            web.token("tokens:read", "tokens:write", "notifications:read", "notifications:write")
        )
        response = client.post(f"{V1}/tokens", json={"name": "x", "permissions": ["*"]})
        assert_error(response, 403, "forbidden", "permissions")

    def test_can_grant_what_it_holds(self, web: Web) -> None:
        """A tokens:write token may create a token with tokens:write, or with no scope."""
        client = web.client(web.token("tokens:write"))
        for permissions in (["tokens:write"], []):
            response = client.post(f"{V1}/tokens", json={"name": "x", "permissions": permissions})
            assert response.status_code == 201
            assert response.json()["permissions"] == permissions

    def test_star_grants_anything(self, web: Web) -> None:
        """A '*' token may grant '*' and permissions outside the API's vocabulary."""
        response = web.admin().post(
            f"{V1}/tokens", json={"name": "x", "permissions": ["*", "scans:read"]}
        )
        assert response.status_code == 201

    def test_cannot_rotate_a_stronger_token(self, web: Web) -> None:
        """A tokens:write token cannot rotate a '*' token (it would get its secret)."""
        strong = web.token("*", name="strong")
        client = web.client(web.token("tokens:write"))
        assert_error(client.post(f"{V1}/tokens/{strong.id}/rotate"), 403, "forbidden")
        assert web.parts.tokens.get(strong.id).superseded_by is None

    def test_can_rotate_an_equal_token(self, web: Web) -> None:
        """A tokens:write token can rotate another tokens:write token."""
        peer = web.token("tokens:write", name="peer")
        response = web.client(web.token("tokens:write")).post(f"{V1}/tokens/{peer.id}/rotate")
        assert response.status_code == 201


# --- every endpoint ---------------------------------------------------------------------------


class TestTokens:
    def test_create_shows_the_secret_once(self, web_on_each_backend: Web) -> None:
        """POST returns 201 with the secret and Location; later reads never carry it."""
        web = web_on_each_backend
        client = web.admin()
        response = client.post(
            f"{V1}/tokens",
            json={
                "name": "ci-deploy",
                "role": "ci",
                "permissions": ["tokens:read"],
                "owner": "ci@example.com",
                "labels": {"team": "platform"},
                "ttl": "72h",
            },
        )
        assert response.status_code == 201
        created = response.json()
        assert response.headers["location"] == f"{V1}/tokens/{created['id']}"
        assert created["token"].startswith("ntf_")
        assert created["expires_at"] == "2026-01-04T00:00:00Z"
        assert created["labels"] == {"team": "platform"}
        assert web.parts.tokens.verify(created["token"]).id == created["id"]
        for path in (f"{V1}/tokens/{created['id']}", f"{V1}/tokens"):
            assert created["token"] not in client.get(path).text
            assert "token" not in client.get(f"{V1}/tokens/{created['id']}").json()

    def test_create_is_audited_with_the_calling_token(self, web_on_each_backend: Web) -> None:
        """The audit trail names the API caller as token:<id>."""
        web = web_on_each_backend
        admin = web.token("*", name="admin")
        created = web.client(admin).post(f"{V1}/tokens", json={"name": "x"}).json()
        (entry,) = list_events(web.parts.database, token_id=created["id"])
        assert entry.actor == f"token:{admin.id}"
        assert entry.action == "create"

    def test_create_defaults_and_expires_at(self, web: Web) -> None:
        """Without a lifetime the default TTL applies; expires_at sets it exactly."""
        client = web.admin(ttl=None)  # a 30-day caller would cut the default (a year) short
        default = client.post(f"{V1}/tokens", json={"name": "a"}).json()
        assert default["expires_at"] == "2027-01-01T00:00:00Z"
        exact = client.post(
            f"{V1}/tokens", json={"name": "b", "expires_at": "2026-03-01T12:00:00+02:00"}
        ).json()
        assert exact["expires_at"] == "2026-03-01T10:00:00Z"

    def test_list_and_filters(self, web_on_each_backend: Web) -> None:
        """The list is soonest first, without revoked ones unless all=true or revoked=true."""
        web = web_on_each_backend
        client = web.admin()
        soon = web.token(name="soon", ttl=2 * DAY)
        gone = web.token(name="gone", ttl=3 * DAY)
        web.parts.tokens.revoke(gone.id)
        names = [t["name"] for t in client.get(f"{V1}/tokens").json()]
        assert names == ["soon", "admin"]
        assert [t["name"] for t in client.get(f"{V1}/tokens?all=true").json()] == [
            "soon",
            "gone",
            "admin",
        ]
        assert [t["id"] for t in client.get(f"{V1}/tokens?revoked=true").json()] == [gone.id]
        assert soon.id in client.get(f"{V1}/tokens").text
        assert_error(
            client.get(f"{V1}/tokens?all=true&revoked=true"), 422, "invalid_request", "revoked"
        )

    def test_expiring_within(self, web_on_each_backend: Web) -> None:
        """/tokens/expiring keeps tokens expiring within `within` (default: the window)."""
        web = web_on_each_backend
        client = web.admin()  # expires in 30 days
        web.token(name="in-2d", ttl=2 * DAY)
        web.token(name="in-5d", ttl=5 * DAY)

        def names(path: str) -> list[str]:
            return [token["name"] for token in client.get(path).json()]

        assert names(f"{V1}/tokens/expiring?within=72h") == ["in-2d"]
        assert names(f"{V1}/tokens/expiring") == ["in-2d", "in-5d"]
        assert names(f"{V1}/tokens/expiring?within=60d") == ["in-2d", "in-5d", "admin"]

    def test_get(self, web_on_each_backend: Web) -> None:
        """GET /tokens/{id} answers the token's resource, or 404 naming the id."""
        web = web_on_each_backend
        client = web.admin()
        target = web.token(name="target", ttl=2 * DAY)
        body = client.get(f"{V1}/tokens/{target.id}").json()
        assert body["name"] == "target"
        assert body["status"] == "expiring"
        assert body["days_left"] == 3  # exactly 2 days left reads "less than 3 days"
        assert body["labels"] == {"team": "platform"}
        missing = assert_error(client.get(f"{V1}/tokens/nope"), 404, "not_found")
        assert "nope" in missing["message"]

    def test_delete_revokes(self, web_on_each_backend: Web) -> None:
        """DELETE revokes (the record stays), is audited, and the token stops working."""
        web = web_on_each_backend
        admin = web.token("*", name="admin")
        target = web.token("tokens:read", name="target")
        response = web.client(admin).delete(f"{V1}/tokens/{target.id}")
        assert response.status_code == 200
        assert response.json()["status"] == "revoked"
        assert web.parts.tokens.get(target.id).revoked_at == web.clock.now()
        events = list_events(web.parts.database, token_id=target.id)
        assert (events[0].action, events[0].actor) == ("revoke", f"token:{admin.id}")
        assert web.client(target).get(f"{V1}/tokens").status_code == 401
        assert_error(web.client(admin).delete(f"{V1}/tokens/nope"), 404, "not_found")

    def test_rotate(self, web_on_each_backend: Web) -> None:
        """Rotate returns a new secret; the old token works during the grace, then not."""
        web = web_on_each_backend
        client = web.admin()
        old = web.token("tokens:read", name="deploy", ttl=10 * DAY)
        response = client.post(f"{V1}/tokens/{old.id}/rotate", json={"grace": "1h"})
        assert response.status_code == 201
        new = response.json()
        assert new["rotated_from"] == old.id
        assert new["permissions"] == ["tokens:read"]
        assert new["expires_at"] == "2026-01-11T00:00:00Z"
        assert web.client(old).get(f"{V1}/tokens").status_code == 200
        web.clock.advance(timedelta(hours=2))
        assert web.client(old).get(f"{V1}/tokens").status_code == 401
        assert web.client(new["token"]).get(f"{V1}/tokens").status_code == 200
        assert_error(client.post(f"{V1}/tokens/{old.id}/rotate"), 409, "conflict")
        assert_error(client.post(f"{V1}/tokens/nope/rotate"), 404, "not_found")

    def test_rotate_with_a_lifetime(self, web: Web) -> None:
        """Rotate takes ttl or expires_at for the new token."""
        client = web.admin()
        old = web.token(name="deploy")
        new = client.post(f"{V1}/tokens/{old.id}/rotate", json={"ttl": "7d"}).json()
        assert new["expires_at"] == "2026-01-08T00:00:00Z"


class TestNotifications:
    def test_list_after_a_pass(self, web_on_each_backend: Web) -> None:
        """A pass's notification is listed; active=true keeps it, active=false does not."""
        web = web_on_each_backend
        client = web.admin()
        web.token(name="ci-deploy", ttl=2 * DAY)
        web.parts.checker.run()
        (notification,) = client.get(f"{V1}/notifications").json()
        assert notification["token_name"] == "ci-deploy"
        assert notification["message"].endswith("will expire in less than 3 days.")
        assert notification["active"] is True
        assert len(client.get(f"{V1}/notifications?active=true").json()) == 1
        assert client.get(f"{V1}/notifications?active=false").json() == []

    def test_acknowledge(self, web_on_each_backend: Web) -> None:
        """Ack hides the notification from the active list, and is audited with the caller."""
        web = web_on_each_backend
        nid = warned(web)
        caller = web.token("notifications:write", name="acker")
        response = web.client(caller).post(f"{V1}/notifications/{nid}/ack")
        assert response.status_code == 200
        body = response.json()
        assert body["active"] is False
        assert body["acknowledged_at"] == "2026-01-01T00:00:00Z"
        client = web.admin()
        assert client.get(f"{V1}/notifications?active=true").json() == []
        assert [n["id"] for n in client.get(f"{V1}/notifications?active=false").json()] == [nid]
        (entry,) = [e for e in list_events(web.parts.database) if e.action == "ack"]
        assert entry.actor == f"token:{caller.id}"
        assert_error(client.post(f"{V1}/notifications/nope/ack"), 404, "not_found")


# --- bad input --------------------------------------------------------------------------------


class TestBadInput:
    @pytest.mark.parametrize(
        ("body", "field", "words"),
        [
            ({"name": "x", "expiry": "30d"}, "expiry", "unknown field"),  # a misspelt field
            ({"name": "x", "ttl": "3 days"}, "ttl", "not a duration"),
            ({"name": "x", "ttl": "0"}, "ttl", "greater than zero"),
            ({"name": "x", "ttl": "-5m"}, "ttl", "greater than zero"),
            ({"name": "x", "ttl": "1000000d"}, "ttl", "longer than 100 years"),
            ({"name": "x", "ttl": "1d", "expires_at": "2026-02-01T00:00:00Z"}, None, "not both"),
            ({"name": "x", "expires_at": "2026-02-01T00:00:00"}, "expires_at", "timezone"),
            ({"name": "x", "expires_at": "2025-01-01T00:00:00Z"}, "expires_at", "future"),
            ({"name": "x", "expires_at": "9999-12-31T23:59:59-01:00"}, "expires_at", "range"),
            ({"name": "x", "expires_at": "2300-01-01T00:00:00Z"}, "expires_at", "100 years"),
            ({"name": ""}, "name", "empty"),
            ({"name": 5}, "name", "string"),
            ({"permissions": []}, "name", "required"),
            ({"name": "x", "labels": {"bad key": "v"}}, "labels", "label key"),
            ({"name": "x", "permissions": ["has space"]}, "permissions", "not a permission"),
            ({"name": "x\u202eevil"}, "name", "control or format"),
            ([], None, "dictionary"),
        ],
    )
    def test_bad_token_bodies_are_422_naming_the_field(
        self, web: Web, body: object, field: str | None, words: str
    ) -> None:
        """Each bad body gets 422 with a message naming the problem (and the field, if one)."""
        response = web.admin().post(f"{V1}/tokens", json=body)
        answer = assert_error(response, 422, "invalid_request", field)
        assert words in answer["message"]

    def test_malformed_json_is_400(self, web: Web) -> None:
        """A body that is not JSON gets 400 saying so."""
        response = web.admin().post(
            f"{V1}/tokens", content=b'{"name": ', headers={"Content-Type": "application/json"}
        )
        body = assert_error(response, 400, "invalid_json")
        assert "not valid JSON" in body["message"]

    def test_oversized_bodies_are_413(self, web: Web) -> None:
        """A body over 64 KiB gets 413, whether its length is declared or streamed."""
        client = web.admin()
        big = b'{"name": "' + b"x" * 70_000 + b'"}'
        assert_error(
            client.post(f"{V1}/tokens", content=big, headers={"Content-Type": "application/json"}),
            413,
            "payload_too_large",
        )

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: sent chunked
            for _ in range(10):
                yield b"x" * 10_000

        response = client.post(
            f"{V1}/tokens", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert_error(response, 413, "payload_too_large")

    def test_bad_query_values_are_422(self, web: Web) -> None:
        """A bad duration or boolean in the query string is 422 naming the parameter."""
        client = web.admin()
        assert_error(
            client.get(f"{V1}/tokens/expiring?within=soon"), 422, "invalid_request", "within"
        )
        assert_error(
            client.get(f"{V1}/notifications?active=maybe"), 422, "invalid_request", "active"
        )

    def test_bad_rotate_bodies_are_422(self, web: Web) -> None:
        """Rotate refuses unknown fields and bad durations with 422 naming them."""
        client = web.admin()
        target = web.token(name="t")
        assert_error(
            client.post(f"{V1}/tokens/{target.id}/rotate", json={"grace": "later"}),
            422,
            "invalid_request",
            "grace",
        )
        assert_error(
            client.post(f"{V1}/tokens/{target.id}/rotate", json={"revoke": True}),
            422,
            "invalid_request",
            "revoke",
        )

    def test_bodies_must_say_they_are_json(self, web: Web) -> None:
        """A body sent without Content-Type: application/json gets 415 saying so."""
        client = web.admin()
        for headers in ({"Content-Type": "text/plain"}, {}):
            response = client.post(f"{V1}/tokens", content=b'{"name": "x"}', headers=headers)
            body = assert_error(response, 415, "unsupported_media_type")
            assert "application/json" in body["message"]
        assert len(web.parts.tokens.list()) == 1  # the admin token alone

    def test_json_nested_too_deep_is_400(self, web: Web) -> None:
        """JSON nested deeper than the parser goes is a 400, not a crash."""
        response = web.admin().post(
            f"{V1}/tokens",
            content=b"[" * 30_000 + b"]" * 30_000,
            headers={"Content-Type": "application/json"},
        )
        assert_error(response, 400, "invalid_json")

    @pytest.mark.parametrize(
        ("path", "allow"),
        [
            (f"{V1}/tokens", "GET, HEAD, POST"),  # two routes on one path
            (f"{V1}/tokens/abc", "DELETE, GET, HEAD"),
            (f"{V1}/tokens/abc/rotate", "POST"),
            ("/healthz", "GET, HEAD"),
            ("/", "GET, HEAD"),
        ],
    )
    def test_unknown_methods_are_405_with_every_allowed_method(
        self, web: Web, path: str, allow: str
    ) -> None:
        """A method a path does not take is 405, as JSON, with Allow naming all it takes."""
        response = web.admin().request("PUT", path)
        assert_error(response, 405, "method_not_allowed")
        assert response.headers["allow"] == allow


# --- last use ---------------------------------------------------------------------------------


class TestLastUsed:
    def test_requests_write_last_use_in_one_batch(self, web_on_each_backend: Web) -> None:
        """Many requests write no UPDATE; after the interval one batched UPDATE writes them all."""
        web = web_on_each_backend
        first, second = web.token("tokens:read"), web.token("tokens:read")
        updates: list[str] = []

        def count(*args: object) -> None:
            statement = str(args[2])
            if statement.lstrip().upper().startswith("UPDATE TOKENS"):
                updates.append(statement)

        event.listen(web.parts.database.engine, "before_cursor_execute", count)
        try:
            for client in (web.client(first), web.client(second)) * 5:
                client.get(f"{V1}/tokens")
            assert updates == []
            assert web.parts.tokens.get(first.id).last_used_at is None
            web.ticker.advance(61)
            web.client(first).get(f"{V1}/tokens")
        finally:
            event.remove(web.parts.database.engine, "before_cursor_execute", count)
        assert len(updates) == 1
        assert web.parts.tokens.get(first.id).last_used_at == web.clock.now()
        assert web.parts.tokens.get(second.id).last_used_at == web.clock.now()

    def test_close_flushes_what_is_pending(self, web: Web) -> None:
        """Stopping the server writes the last uses collected since the last flush."""
        token = web.token("tokens:read")
        web.client(token).get(f"{V1}/tokens")
        assert web.parts.tokens.get(token.id).last_used_at is None
        web.api.close()
        assert web.parts.tokens.get(token.id).last_used_at == web.clock.now()

    def test_last_use_never_moves_backwards(self, web_on_each_backend: Web) -> None:
        """A batch with an older time (another replica's) leaves a newer one alone."""
        web = web_on_each_backend
        token = web.token()
        now = web.clock.now()
        assert web.parts.tokens.record_last_used({token.id: now}) == 1
        assert web.parts.tokens.record_last_used({token.id: now - DAY, "missing": now}) == 0
        with web.parts.database.read() as connection:
            stored = connection.execute(
                select(Token.__table__.c.last_used_at).where(Token.__table__.c.id == token.id)
            ).scalar_one()
        assert stored == now


# --- repeated query parameters ------------------------------------------------------------------


class TestRepeatedQuery:
    @pytest.mark.parametrize(
        ("query", "field"),
        [
            ("/notifications?active=garbage&active=true", "active"),  # the flaky seed's case
            ("/notifications?active=true&active=true", "active"),  # even the same value
            ("/tokens?all=true&all=false", "all"),
            ("/tokens?revoked=false&revoked=true", "revoked"),
            ("/tokens/expiring?within=1h&within=2h", "within"),
        ],
    )
    def test_a_repeated_scalar_is_422(self, web: Web, query: str, field: str) -> None:
        """A parameter that takes one value, given twice, is 422 naming it."""
        body = assert_error(web.admin().get(V1 + query), 422, "invalid_request", field)
        assert "given 2 times" in body["message"]

    def test_every_scalar_query_parameter_of_the_document(self, web: Web) -> None:
        """Each scalar query parameter the OpenAPI document declares, repeated, is 422."""
        client = web.admin()
        document = client.get("/openapi.json").json()
        checked = set()
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                for parameter in operation.get("parameters", []):
                    schema = parameter.get("schema", {})
                    shapes = [schema, *schema.get("anyOf", [])]
                    if parameter["in"] != "query" or any(s.get("type") == "array" for s in shapes):
                        continue
                    name = parameter["name"]
                    url = path.replace("{token_id}", "abc").replace("{notification_id}", "n1")
                    response = client.request(method.upper(), f"{url}?{name}=1h&{name}=true")
                    body = assert_error(response, 422, "invalid_request", name)
                    assert "given 2 times" in body["message"], (path, name)
                    checked.add(name)
        assert checked == {
            "action", "active", "all", "cursor", "expires_after", "expires_before",
            "expiring_within", "failed", "limit", "owner", "q", "revoked", "sink", "sort",
            "source", "token_id", "within",
        }  # fmt: skip

    def test_a_list_parameter_may_repeat(self, web: Web) -> None:
        """Status and label take several values: repeating them is how."""
        response = web.admin().get(f"{V1}/tokens?status=active&status=expired&label=a=b&label=c=d")
        assert response.status_code == 200, response.text

    @pytest.mark.parametrize(
        ("query", "field"),
        [
            ("/notifications?page=1", "page"),
            ("/tokens?limt=10", "limt"),
            ("/tokens/expiring?all=true", "all"),
            ("/auth/whoami?x=1", "x"),
        ],
    )
    def test_parameters_a_route_does_not_take_are_422(
        self, web: Web, query: str, field: str
    ) -> None:
        """An unknown parameter is refused, naming it: ignored, it would seem to apply."""
        body = assert_error(web.admin().get(V1 + query), 422, "invalid_request", field)
        assert "not a parameter of this route" in body["message"]


# --- failed authentications: throttled per address --------------------------------------------

WRONG = "ntf_3f9c1d0e7a2b4c6d8e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b"


class TestFailureThrottle:
    def test_past_the_limit_an_address_gets_429_and_no_more_guesses(
        self, make_web: WebFactory
    ) -> None:
        """After the limit of failures in a minute, that address gets 429 with Retry-After."""
        web = make_web(NOTIFIER_API_AUTH_FAILURE_LIMIT="3")
        guesser = web.client(WRONG, address="203.0.113.9")
        assert [guesser.get(f"{V1}/tokens").status_code for _ in range(3)] == [401] * 3
        web.ticker.advance(15)
        response = guesser.get(f"{V1}/tokens")
        body = assert_error(response, 429, "rate_limited")
        assert response.headers["retry-after"] == "45"
        assert "failed authentications" in body["message"]

    def test_a_throttled_address_is_refused_before_its_token_is_looked_at(
        self, make_web: WebFactory
    ) -> None:
        """Once throttled, even a valid token from that address gets 429: no guess is tested."""
        web = make_web(NOTIFIER_API_AUTH_FAILURE_LIMIT="2")
        valid = web.token("tokens:read")
        for _ in range(2):
            web.client(WRONG, address="203.0.113.9").get(f"{V1}/tokens")
        with capture_logs() as logs:
            response = web.client(valid, address="203.0.113.9").get(f"{V1}/tokens")
        assert_error(response, 429, "rate_limited")
        assert not [entry for entry in logs if entry["event"] == "auth.failed"]

    def test_other_addresses_are_not_locked_out(self, make_web: WebFactory) -> None:
        """An attacker's failures never refuse a valid token presented from another address."""
        web = make_web(NOTIFIER_API_AUTH_FAILURE_LIMIT="2")
        valid = web.token("tokens:read")
        guesser = web.client(WRONG, address="203.0.113.9")
        for _ in range(5):
            guesser.get(f"{V1}/tokens")
        assert guesser.get(f"{V1}/tokens").status_code == 429
        assert web.client(valid, address="198.51.100.4").get(f"{V1}/tokens").status_code == 200
        assert web.client(valid, address="127.0.0.1").get(f"{V1}/tokens").status_code == 200

    def test_the_refusal_is_logged_once_per_window(self, make_web: WebFactory) -> None:
        """A flood of refused guesses logs auth.throttled once a minute, not once per request."""
        web = make_web(NOTIFIER_API_AUTH_FAILURE_LIMIT="2")
        guesser = web.client(WRONG, address="203.0.113.9")
        with capture_logs() as logs:
            for _ in range(2):
                guesser.get(f"{V1}/tokens")
            for _ in range(50):
                assert guesser.get(f"{V1}/tokens").status_code == 429
            web.ticker.advance(30)
            guesser.get(f"{V1}/tokens")
        (entry,) = [e for e in logs if e["event"] == "auth.throttled"]
        assert (entry["log_level"], entry["client"], entry["limit"]) == (
            "warning",
            "203.0.113.9",
            2,
        )
        assert entry["retry_after"] == 60
        assert len([e for e in logs if e["event"] == "auth.failed"]) == 2

    def test_the_window_rolls(self, make_web: WebFactory) -> None:
        """A minute after the oldest failure, the address may try again (and only once more)."""
        web = make_web(NOTIFIER_API_AUTH_FAILURE_LIMIT="2")
        guesser = web.client(WRONG, address="203.0.113.9")
        guesser.get(f"{V1}/tokens")
        web.ticker.advance(30)
        guesser.get(f"{V1}/tokens")
        assert guesser.get(f"{V1}/tokens").status_code == 429
        web.ticker.advance(30)
        assert guesser.get(f"{V1}/tokens").status_code == 401
        assert guesser.get(f"{V1}/tokens").status_code == 429
        valid = web.token("tokens:read")
        web.ticker.advance(60)
        assert web.client(valid, address="203.0.113.9").get(f"{V1}/tokens").status_code == 200

    def test_the_address_is_the_client_behind_a_trusted_proxy(self, make_web: WebFactory) -> None:
        """Behind a trusted proxy, failures count for the forwarded client, not the proxy."""
        web = make_web(NOTIFIER_API_AUTH_FAILURE_LIMIT="2", NOTIFIER_TRUSTED_PROXIES="192.0.2.0/24")
        valid = web.token("tokens:read")
        for _ in range(3):
            web.client(WRONG, address="192.0.2.7").get(
                f"{V1}/tokens", headers={"X-Forwarded-For": "203.0.113.9"}
            )
        through_proxy = web.client(valid, address="192.0.2.7")
        attacker = {"X-Forwarded-For": "203.0.113.9"}
        assert through_proxy.get(f"{V1}/tokens", headers=attacker).status_code == 429
        other = {"X-Forwarded-For": "198.51.100.4"}
        assert through_proxy.get(f"{V1}/tokens", headers=other).status_code == 200

    def test_ipv6_counts_by_64(self, make_web: WebFactory) -> None:
        """IPv6 clients count by /64: fresh addresses from one network do not escape."""
        web = make_web(NOTIFIER_API_AUTH_FAILURE_LIMIT="2")
        for host in ("2001:db8:1:2::1", "2001:db8:1:2::2"):
            web.client(WRONG, address=host).get(f"{V1}/tokens")
        assert web.client(WRONG, address="2001:db8:1:2::3").get(f"{V1}/tokens").status_code == 429
        assert web.client(WRONG, address="2001:db8:1:3::1").get(f"{V1}/tokens").status_code == 401

    def test_requests_without_a_token_do_not_count(self, make_web: WebFactory) -> None:
        """A request that presents no token guesses nothing and is not counted."""
        web = make_web(NOTIFIER_API_AUTH_FAILURE_LIMIT="2")
        anonymous = web.client(address="203.0.113.9")
        assert {anonymous.get(f"{V1}/tokens").status_code for _ in range(10)} == {401}

    def test_zero_turns_it_off(self, make_web: WebFactory) -> None:
        """NOTIFIER_API_AUTH_FAILURE_LIMIT=0: failures are never throttled."""
        web = make_web(NOTIFIER_API_AUTH_FAILURE_LIMIT="0")
        guesser = web.client(WRONG, address="203.0.113.9")
        assert {guesser.get(f"{V1}/tokens").status_code for _ in range(30)} == {401}

    def test_the_default_allows_20_a_minute(self, web: Web) -> None:
        """By default the 21st failure in a minute from one address is throttled."""
        guesser = web.client(WRONG, address="203.0.113.9")
        assert [guesser.get(f"{V1}/tokens").status_code for _ in range(21)] == [401] * 20 + [429]


# --- a token cannot outlive itself ----------------------------------------------------------------


class TestLifetimeBound:
    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"ttl": "36500d"}, "ttl"),
            ({"ttl": "61m"}, "ttl"),
            ({"expires_at": "2026-01-01T01:00:01Z"}, "expires_at"),
        ],
    )
    def test_create_cannot_outlive_the_caller(
        self, web: Web, body: dict[str, str], field: str
    ) -> None:
        """A token expiring in an hour cannot create one that expires later: 422 naming it."""
        client = web.client(web.token("tokens:write", ttl=timedelta(hours=1)))
        answer = assert_error(
            client.post(f"{V1}/tokens", json={"name": "x", **body}), 422, "invalid_request", field
        )
        assert "outlives itself" in answer["message"]
        assert "2026-01-01T01:00:00Z" in answer["message"]  # the caller's own expiry
        assert [t.name for t in web.parts.tokens.list()] == ["caller"]

    def test_create_up_to_the_callers_expiry(self, web: Web) -> None:
        """A lifetime that ends no later than the caller's is fine."""
        client = web.client(web.token("tokens:write", ttl=timedelta(hours=1)))
        for body in ({"ttl": "1h"}, {"expires_at": "2026-01-01T01:00:00Z"}):
            response = client.post(f"{V1}/tokens", json={"name": "x", **body})
            assert response.status_code == 201, response.text
            assert response.json()["expires_at"] == "2026-01-01T01:00:00Z"

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"ttl": "36500d"}, "ttl"),
            ({"expires_at": "2027-01-01T00:00:00Z"}, "expires_at"),
        ],
    )
    def test_rotate_cannot_outlive_the_caller(
        self, web: Web, body: dict[str, str], field: str
    ) -> None:
        """A token expiring in an hour cannot rotate a token into a longer-lived one."""
        target = web.token(name="deploy", ttl=10 * DAY)
        client = web.client(web.token("tokens:write", ttl=timedelta(hours=1)))
        answer = assert_error(
            client.post(f"{V1}/tokens/{target.id}/rotate", json=body),
            422,
            "invalid_request",
            field,
        )
        assert "outlives itself" in answer["message"]
        assert web.parts.tokens.get(target.id).superseded_by is None

    def test_a_lifetime_not_asked_for_ends_with_the_callers(self, web: Web) -> None:
        """The default lifetime, and a rotated token's own, are cut to the caller's expiry."""
        client = web.client(web.token("tokens:write", ttl=timedelta(hours=1)))
        created = client.post(f"{V1}/tokens", json={"name": "x"})
        assert created.status_code == 201, created.text
        assert created.json()["expires_at"] == "2026-01-01T01:00:00Z"  # not a year
        target = web.token(name="deploy", ttl=10 * DAY)
        rotated = client.post(f"{V1}/tokens/{target.id}/rotate")
        assert rotated.status_code == 201, rotated.text
        assert rotated.json()["expires_at"] == "2026-01-01T01:00:00Z"  # not 10 days
        forever = web.token(name="forever", ttl=None)
        rotated = client.post(f"{V1}/tokens/{forever.id}/rotate")
        assert rotated.json()["expires_at"] == "2026-01-01T01:00:00Z"  # not never

    def test_the_bootstrap_key_is_the_operator(self, make_web: WebFactory) -> None:
        """The bootstrap key never expires: it may create and rotate for up to a century."""
        key = TestBootstrap.KEY
        web = make_web(NOTIFIER_BOOTSTRAP_TOKEN=key)
        client = web.client(key)
        created = client.post(f"{V1}/tokens", json={"name": "x", "ttl": "36500d"})
        assert created.status_code == 201, created.text
        rotated = client.post(f"{V1}/tokens/{created.json()['id']}/rotate", json={"ttl": "36500d"})
        assert rotated.status_code == 201, rotated.text

    def test_a_caller_that_never_expires_is_bounded_by_the_century(self, web: Web) -> None:
        """A token without expiry may make a 100-year token, not a longer one."""
        client = web.admin(ttl=None)
        assert client.post(f"{V1}/tokens", json={"name": "x", "ttl": "36525d"}).status_code == 201
        assert_error(
            client.post(f"{V1}/tokens", json={"name": "x", "ttl": "36526d"}),
            422,
            "invalid_request",
            "ttl",
        )

    def test_the_max_lifetime_setting_names_ttl(self, make_web: WebFactory) -> None:
        """NOTIFIER_TOKEN_MAX_LIFETIME refuses a longer ttl, naming ttl (the field sent)."""
        key = TestBootstrap.KEY  # it never expires, so the setting is the only bound
        web = make_web(
            NOTIFIER_TOKEN_MAX_LIFETIME="90d",
            NOTIFIER_TOKEN_DEFAULT_TTL="30d",
            NOTIFIER_BOOTSTRAP_TOKEN=key,
        )
        client = web.client(key)
        body = assert_error(
            client.post(f"{V1}/tokens", json={"name": "x", "ttl": "91d"}),
            422,
            "invalid_request",
            "ttl",
        )
        assert "NOTIFIER_TOKEN_MAX_LIFETIME" in body["message"]
        assert client.post(f"{V1}/tokens", json={"name": "x", "ttl": "90d"}).status_code == 201

    @pytest.mark.parametrize(
        ("path", "body", "field"),
        [
            ("/tokens", {"name": "x", "ttl": "100000000d"}, "ttl"),
            ("/tokens", {"name": "x", "ttl": "99999999999999999999999d"}, "ttl"),
            ("/tokens", {"name": "x", "expires_at": "9999-12-31T23:59:59-23:59"}, "expires_at"),
            ("/tokens", {"name": "x", "expires_at": "0001-01-01T00:00:00+23:59"}, "expires_at"),
            ("/tokens/{id}/rotate", {"ttl": "100000000d"}, "ttl"),
            ("/tokens/{id}/rotate", {"grace": "100000000d"}, "grace"),
            ("/tokens/{id}/rotate", {"grace": "1000000000000d"}, "grace"),
            ("/tokens/{id}/rotate", {"expires_at": "9999-12-31T23:59:59-23:59"}, "expires_at"),
        ],
    )
    def test_overflowing_values_are_422(
        self, web: Web, path: str, body: dict[str, str], field: str
    ) -> None:
        """Values past what a date can hold are refused naming the field, never a 500."""
        target = web.token(name="deploy")
        response = web.admin(ttl=None).post(V1 + path.format(id=target.id), json=body)
        assert_error(response, 422, "invalid_request", field)

    @pytest.mark.parametrize("within", ["100000000d", "1000000000000d", "36526d"])
    def test_an_overflowing_within_is_422(self, web: Web, within: str) -> None:
        """/tokens/expiring?within= past a century is refused naming `within`."""
        response = web.admin().get(f"{V1}/tokens/expiring?within={within}")
        assert_error(response, 422, "invalid_request", "within")


class TestSupersededToken:
    def rotated(self, web: Web) -> ApiClient:
        """A '*' token rotated with a day's grace: superseded, still authenticating."""
        old = web.token("*", name="old")
        assert web.parts.tokens.rotate(old.id, grace=DAY).rotated_from == old.id
        return web.client(old)

    def test_it_still_reads(self, web: Web) -> None:
        """During its grace a superseded token reads and asks who it is."""
        client = self.rotated(web)
        assert client.get(f"{V1}/tokens").status_code == 200
        assert client.get(f"{V1}/auth/whoami").status_code == 200
        assert client.get(f"{V1}/notifications").status_code == 200

    def test_it_cannot_create(self, web: Web) -> None:
        """A superseded token cannot create a token: 403 saying it was rotated."""
        body = assert_error(
            self.rotated(web).post(f"{V1}/tokens", json={"name": "x", "ttl": "1h"}),
            403,
            "forbidden",
        )
        assert "rotated" in body["message"]
        assert "cannot create" in body["message"]
        assert {t.name for t in web.parts.tokens.list()} == {"old"}

    def test_it_cannot_rotate(self, web: Web) -> None:
        """A superseded token cannot rotate another token: 403 saying it was rotated."""
        client = self.rotated(web)
        target = web.token(name="target")
        body = assert_error(client.post(f"{V1}/tokens/{target.id}/rotate"), 403, "forbidden")
        assert "cannot rotate" in body["message"]
        assert web.parts.tokens.get(target.id).superseded_by is None


# --- no metadata without tokens:read ----------------------------------------------------------


class TestNoMetadataWithoutRead:
    def test_revoke_without_read_answers_204_without_a_body(self, web: Web) -> None:
        """tokens:write alone revokes, and gets 204 with no record, again and again."""
        target = web.token("tokens:read", name="target")
        writer = web.client(web.token("tokens:write"))
        for _ in range(2):  # a live token, then an already revoked one
            response = writer.delete(f"{V1}/tokens/{target.id}")
            assert response.status_code == 204
            assert response.content == b""
        assert web.parts.tokens.get(target.id).status == "revoked"

    def test_revoke_with_read_answers_the_record(self, web: Web) -> None:
        """With tokens:read as well, revoking answers the revoked record (200)."""
        target = web.token(name="target")
        response = web.client(web.token("tokens:write", "tokens:read")).delete(
            f"{V1}/tokens/{target.id}"
        )
        assert response.status_code == 200
        assert response.json()["name"] == "target"

    def test_the_rotate_conflict_does_not_describe_the_token(self, web: Web) -> None:
        """Without tokens:read, the 409 of a rotated token names no successor."""
        target = web.token(name="target")
        successor = web.parts.tokens.rotate(target.id, grace=DAY)  # superseded, not revoked
        body = assert_error(
            web.client(web.token("tokens:write")).post(f"{V1}/tokens/{target.id}/rotate"),
            409,
            "conflict",
        )
        assert successor.id not in body["message"]
        body = assert_error(
            web.client(web.token("tokens:write", "tokens:read")).post(
                f"{V1}/tokens/{target.id}/rotate"
            ),
            409,
            "conflict",
        )
        assert successor.id in body["message"]

    def test_the_rotate_escalation_does_not_list_the_scopes(self, web: Web) -> None:
        """Without tokens:read, refusing to rotate a stronger token lists none of its scopes."""
        strong = web.token("notifications:write", name="strong")
        body = assert_error(
            web.client(web.token("tokens:write")).post(f"{V1}/tokens/{strong.id}/rotate"),
            403,
            "forbidden",
        )
        assert "notifications:write" not in body["message"]

    def test_the_document_says_so(self, web: Web) -> None:
        """The OpenAPI document lists DELETE's 204 beside its 200."""
        document = web.client().get("/openapi.json").json()
        responses = document["paths"]["/api/v1/tokens/{token_id}"]["delete"]["responses"]
        assert {"200", "204"} <= set(responses)


# --- HEAD ---------------------------------------------------------------------------------------


class TestHead:
    @pytest.mark.parametrize(
        "path", ["/", "/healthz", "/readyz", "/openapi.json", "/static/app.js"]
    )
    def test_head_is_answered_wherever_get_is(self, web: Web, path: str) -> None:
        """HEAD gets GET's status and headers, and no body."""
        client = web.client()
        got, head = client.get(path), client.request("HEAD", path)
        assert head.status_code == got.status_code == 200
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"]
        assert head.headers["content-length"] == got.headers["content-length"]

    def test_head_on_the_api_needs_the_token_and_scope(self, web: Web) -> None:
        """HEAD on the API is a GET without a body: 401 without a token, 403 without scope."""
        assert web.client().request("HEAD", f"{V1}/tokens").status_code == 401
        no_scope = web.client(web.token("notifications:read"))
        assert no_scope.request("HEAD", f"{V1}/tokens").status_code == 403
        head = web.admin().request("HEAD", f"{V1}/tokens")
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["cache-control"] == "no-store"

    def test_head_where_get_is_not_taken_is_405(self, web: Web) -> None:
        """HEAD on a path with no GET (rotate) is 405 with the path's methods."""
        target = web.token(name="t")
        response = web.admin().request("HEAD", f"{V1}/tokens/{target.id}/rotate")
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
