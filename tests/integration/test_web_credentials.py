"""``GET /api/v1/credentials``: every watched credential, paged behind Link headers.

Against the real app on a real database, with an x509 source reading certificates made in
the test (tests/certificates.py) and the store's tokens; a pass is run by a direct call.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from notifier.testing import fill_tokens
from tests.certificates import Chain, fingerprint_of
from tests.integration.test_web_api import assert_error
from tests.integration.test_web_lists import every_page, next_url
from tests.web_tier import Web, WebFactory

V1 = "/api/v1"
DAY = timedelta(days=1)


@pytest.fixture
def certified(make_web: WebFactory, tmp_path: Path) -> tuple[Web, list[str]]:
    """The store (60 tokens) and an x509 source of three certificates, after one pass."""
    chain = Chain()
    web_dir = tmp_path / "certs"
    web_dir.mkdir()
    fingerprints = []
    web = make_web(NOTIFIER_SOURCES="store,x509", NOTIFIER_X509_PATHS=f"{web_dir}/*.pem")
    now = web.clock.now()
    for name, days in (("soon.example.com", 2.5), ("later.example.com", 40), ("old", -3)):
        pem = chain.bundle(
            chain.leaf(name, not_before=now - 60 * DAY, not_after=now + days * DAY),
            with_root=False,
        )
        (web_dir / f"{name}.pem").write_bytes(pem)
        fingerprints.append(fingerprint_of(pem))
    fill_tokens(web.parts.database, 60, now=now, seed=8, owners=3)
    report = web.parts.checker.run()
    assert report.failed_sources == []
    return web, fingerprints


class TestCredentials:
    def test_lists_the_store_and_the_certificates_a_pass_found(
        self, certified: tuple[Web, list[str]]
    ) -> None:
        web, fingerprints = certified
        admin = web.admin()
        items, sizes = every_page(admin, f"{V1}/credentials?limit=9")
        certificates = [item for item in items if item["kind"] == "certificate"]
        # Leaves only (not the intermediate, which is a CA); each by its fingerprint.
        leaves = {item["id"] for item in certificates if item["name"] != "Testing CA"}
        assert set(fingerprints) <= leaves
        soon = next(item for item in certificates if item["id"] == fingerprints[0])
        assert soon["source"] == "x509"
        assert soon["name"] == "soon.example.com"
        assert soon["days_left"] == 3
        assert soon["status"] == "expiring"
        assert soon["seen_at"] is not None
        old = next(item for item in certificates if item["id"] == fingerprints[2])
        assert (old["status"], old["days_left"]) == ("expired", None)
        store = [item for item in items if item["source"] == "store"]
        assert all(item["kind"] == "token" and item["seen_at"] is None for item in store)
        assert len({(item["source"], item["id"]) for item in items}) == len(items)
        assert sizes[:-1] == [9] * (len(sizes) - 1)
        expiries = [item["expires_at"] for item in items if item["expires_at"] is not None]
        assert expiries == sorted(expiries)  # RFC 3339 in UTC with Z sorts as time does

    def test_filters_keep_their_link(self, certified: tuple[Web, list[str]]) -> None:
        web, fingerprints = certified
        admin = web.admin()
        first = admin.get(f"{V1}/credentials?kind=certificate&kind=lease&limit=1")
        assert first.status_code == 200, first.text
        url = next_url(first)
        assert url is not None
        assert parse_qs(urlsplit(url).query)["kind"] == ["certificate", "lease"]
        items, _ = every_page(admin, f"{V1}/credentials?kind=certificate&limit=1")
        assert {item["kind"] for item in items} == {"certificate"}
        only = admin.get(f"{V1}/credentials?q={fingerprints[1][:12]}").json()
        assert [item["id"] for item in only] == [fingerprints[1]]
        within = admin.get(f"{V1}/credentials?source=x509&expiring_within=7d").json()
        assert [item["id"] for item in within] == [fingerprints[0]]
        expired = admin.get(f"{V1}/credentials?source=x509&status=expired").json()
        assert [item["id"] for item in expired] == [fingerprints[2]]
        store = admin.get(f"{V1}/credentials?source=store&limit=1000").json()
        assert store
        assert {item["source"] for item in store} == {"store"}

    def test_bad_input_is_a_4xx_naming_it(self, certified: tuple[Web, list[str]]) -> None:
        web, _ = certified
        admin = web.admin()
        assert_error(admin.get(f"{V1}/credentials?kind=password"), 422, "invalid_request", "kind")
        assert_error(
            admin.get(f"{V1}/credentials?status=revoked"), 422, "invalid_request", "status"
        )
        assert_error(admin.get(f"{V1}/credentials?sort=owner"), 422, "invalid_request", "sort")
        assert_error(
            admin.get(f"{V1}/credentials?expiring_within=soon"),
            422,
            "invalid_request",
            "expiring_within",
        )
        assert_error(
            admin.get(f"{V1}/credentials?expires_after=2"), 422, "invalid_request", "expires_after"
        )
        assert_error(admin.get(f"{V1}/credentials?label=nokey"), 422, "invalid_request", "label")
        assert_error(admin.get(f"{V1}/credentials?limt=3"), 422, "invalid_request", "limt")
        assert_error(admin.get(f"{V1}/credentials?cursor=garbage"), 400, "invalid_cursor", "cursor")
        url = next_url(admin.get(f"{V1}/credentials?limit=2"))
        assert url is not None
        cursor = parse_qs(urlsplit(url).query)["cursor"][0]
        assert_error(
            admin.get(f"{V1}/credentials?kind=token&cursor={cursor}"),
            400,
            "invalid_cursor",
            "cursor",
        )

    def test_scope_tokens_read(self, certified: tuple[Web, list[str]]) -> None:
        web, _ = certified
        notifications = web.client(web.token("notifications:read"))
        assert_error(notifications.get(f"{V1}/credentials"), 403, "forbidden")
        assert_error(web.client("not-a-token").get(f"{V1}/credentials"), 401, "unauthorized")
        reader = web.client(web.token("tokens:read"))
        assert reader.get(f"{V1}/credentials").status_code == 200


def test_without_the_store_its_tokens_are_not_watched(make_web: WebFactory, tmp_path: Path) -> None:
    """NOTIFIER_SOURCES without `store`: the daemon warns about none of its tokens."""
    path = tmp_path / "edge.pem"
    chain = Chain()
    web = make_web(NOTIFIER_SOURCES="x509", NOTIFIER_X509_PATHS=str(path))
    now = web.clock.now()
    path.write_bytes(
        chain.bundle(
            chain.leaf("edge.example.com", not_before=now - DAY, not_after=now + 9 * DAY),
            with_root=False,
        )
    )
    web.parts.checker.run()
    items = web.admin().get(f"{V1}/credentials").json()
    assert items
    assert {item["source"] for item in items} == {"x509"}
