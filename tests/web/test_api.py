"""The HTTP API against the real app and a real database: every endpoint, every refusal."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select
from structlog.testing import capture_logs

from notifier.db.models import Token
from notifier.tokens.audit import list_events

from .conftest import DAY, Web, WebFactory

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
    # stream's own scope is checked over a socket in tests/web/test_stream.py.
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
        client = web.admin()
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

    def test_unknown_methods_are_405(self, web: Web) -> None:
        """A method a path does not take is 405 with Allow, as JSON."""
        response = web.admin().request("PUT", f"{V1}/tokens")
        assert_error(response, 405, "method_not_allowed")
        assert "GET" in response.headers["allow"]


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
