"""The aws source against moto's server mode, and against IAM's documented answers on loopback.

moto's ``ThreadedMotoServer`` is a real HTTP endpoint on 127.0.0.1 that boto3 signs its
requests to; with ``POST /moto-api/reset-auth`` it also checks the signing key and its
policies, so refusals are moto's own. moto answers ``ListUsers`` in one page, so paging,
throttling, 5xx answers and timeouts are played by a loopback server answering with the
Query API's documented shapes:

- ListUsers (https://docs.aws.amazon.com/IAM/latest/APIReference/API_ListUsers.html):
  ``ListUsersResult`` with ``Users``/``member`` (``UserName``, ``UserId``, ``Arn``, ``Path``,
  ``CreateDate``), ``IsTruncated``, and ``Marker`` to send back; ``MaxItems`` 1 to 1000.
- ListAccessKeys (https://docs.aws.amazon.com/IAM/latest/APIReference/API_ListAccessKeys.html)
  and AccessKeyMetadata (https://docs.aws.amazon.com/IAM/latest/APIReference/API_AccessKeyMetadata.html):
  ``AccessKeyId``, ``CreateDate``, ``Status`` (``Active`` | ``Inactive``), ``UserName``.
- access-keys-rotated
  (https://docs.aws.amazon.com/config/latest/developerguide/access-keys-rotated.html):
  ``maxAccessKeyAge``, 90 days by default.
- Common errors (https://docs.aws.amazon.com/IAM/latest/APIReference/CommonErrors.html):
  ``ThrottlingException`` 400, ``InternalFailure`` 500, ``InvalidClientTokenId`` 403, in an
  ``ErrorResponse``/``Error`` (``Type``, ``Code``, ``Message``) with a ``RequestId``.
- Retries (https://docs.aws.amazon.com/boto3/latest/guide/retries.html): ``standard`` mode
  retries throttling and 500/502/503/504 with backoff, up to ``max_attempts``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import httpx
import pytest
from pytest_httpserver import HTTPServer
from structlog.testing import capture_logs
from werkzeug import Request, Response

from notifier.core.clock import FixedClock
from notifier.core.messages import sentence
from notifier.core.model import CredentialKind, NoticeKind
from notifier.db.database import Database
from notifier.sources import SourceError
from notifier.sources.aws import MAX_ATTEMPTS, PAGE_SIZE, PARALLEL_USERS, AwsSource, AwsSourceConfig
from notifier.testing import RecordingSink
from tests.conftest import sqlite_database
from tests.integration.test_sources import checker
from tests.receivers import free_port, threaded_httpserver

boto3 = pytest.importorskip("boto3", reason="the aws extra (boto3) is not installed")
moto_server = pytest.importorskip(
    "moto.server", reason="moto[server] (a dev dependency) is not installed"
)

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

DAY = timedelta(days=1)
MAX_AGE = 60 * DAY  # not the default, so a source that ignored max_age would show
ADMIN_KEY = ("AKIAADMINFORTHETESTS", "admin-secret-for-the-tests")  # any key, before auth is on
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DOC = Path(__file__).resolve().parents[2] / "docs" / "sources.md"
database = sqlite_database
threaded = threaded_httpserver


@pytest.fixture(autouse=True)
def no_host_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """boto3 reads neither this host's AWS files and variables nor an instance's metadata."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_RETRY_MODE",
        "AWS_MAX_ATTEMPTS",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_IAM",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """Moto's server mode on a free loopback port, for this module's tests."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@dataclass
class Moto:
    """moto's IAM, emptied for each test, and an admin client to set it up with."""

    url: str
    iam: IAMClient

    def user(self, name: str, *, tags: dict[str, str] | None = None) -> str:
        """Create the user *name* and one active key for it; return the key's id."""
        self.iam.create_user(
            UserName=name, Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()]
        )
        return self.key(name)

    def key(self, user: str) -> str:
        return self.iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"]

    def created(self, user: str, key_id: str) -> datetime:
        """When moto says *key_id* was created (moto's real now)."""
        keys = self.iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
        (key,) = [key for key in keys if key.get("AccessKeyId") == key_id]
        created = key.get("CreateDate")
        assert created is not None
        return created.astimezone(UTC)

    def deactivate(self, user: str, key_id: str) -> None:
        self.iam.update_access_key(UserName=user, AccessKeyId=key_id, Status="Inactive")

    def signer(self, user: str, policy: str | None = None) -> tuple[str, str]:
        """A user, with *policy* inline if given, and its key's id and secret."""
        self.iam.create_user(UserName=user)
        if policy is not None:
            self.iam.put_user_policy(UserName=user, PolicyName="notifier", PolicyDocument=policy)
        key = self.iam.create_access_key(UserName=user)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    @contextmanager
    def checking_keys(self) -> Iterator[None]:
        """Have moto check each request's key and policies (its server mode's reset-auth)."""
        httpx.post(f"{self.url}/moto-api/reset-auth", content=b"0").raise_for_status()
        try:
            yield
        finally:
            httpx.post(f"{self.url}/moto-api/reset-auth", content=b"inf").raise_for_status()


@pytest.fixture
def moto(moto_url: str) -> Moto:
    httpx.post(f"{moto_url}/moto-api/reset").raise_for_status()
    key_id, secret = ADMIN_KEY
    iam = boto3.session.Session(
        aws_access_key_id=key_id, aws_secret_access_key=secret, region_name="us-east-1"
    ).client("iam", endpoint_url=moto_url)
    return Moto(moto_url, iam)


def config(endpoint: str, **options: Any) -> AwsSourceConfig:
    key_id, secret = options.pop("key", ("AKIAIOSFODNN7EXAMPLE", SECRET))
    return AwsSourceConfig(
        name=options.pop("name", "aws"),
        max_age=options.pop("max_age", MAX_AGE),
        profile=None,
        region=None,
        endpoint_url=endpoint,
        access_key_id=key_id,
        secret_access_key=secret,
        users=options.pop("users", ()),
        owner_tag=options.pop("owner_tag", None),
        last_used=options.pop("last_used", False),
        timeout=options.pop("timeout", timedelta(seconds=5)),
    )


def read(source_config: AwsSourceConfig) -> dict[str, Any]:
    source = AwsSource(source_config)
    try:
        return dict(source.read())
    finally:
        source.close()


class TestKeys:
    def test_active_keys_by_access_key_id(self, moto: Moto) -> None:
        """Each active key is watched by its id, named by its user, due at creation + max_age."""
        key_id = moto.user("alice")
        created = moto.created("alice", key_id)
        found = read(config(moto.url))
        key = found[key_id]
        assert (key.name, key.credential_kind) == ("alice", CredentialKind.ACCESS_KEY)
        assert key.created_at == created
        assert key.expires_at == created + MAX_AGE
        assert key.owner is None
        assert key.labels == {
            "user": "alice",
            "created": created.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "max_age": "60d",
        }
        assert SECRET not in repr(found)

    def test_inactive_keys_are_left_out(self, moto: Moto) -> None:
        """Of a user's two keys, the deactivated one is not watched."""
        kept = moto.user("alice")
        old = moto.key("alice")
        moto.deactivate("alice", old)
        assert list(read(config(moto.url))) == [kept]

    def test_every_user_by_default(self, moto: Moto) -> None:
        """Without users, every user's keys are read; a user without keys adds none."""
        alice, bob = moto.user("alice"), moto.user("bob")
        moto.iam.create_user(UserName="no-keys")
        found = read(config(moto.url))
        assert {key_id: key.name for key_id, key in found.items()} == {
            alice: "alice",
            bob: "bob",
        }

    def test_users_names_whom_to_watch(self, moto: Moto) -> None:
        """With users, only those users' keys are read."""
        alice = moto.user("alice")
        moto.user("bob")
        assert list(read(config(moto.url, users=("alice",)))) == [alice]

    def test_the_owner_tag(self, moto: Moto) -> None:
        """With owner_tag, the user's tag of that key is the owner; without it, no owner."""
        tagged = moto.user("alice", tags={"email": "alice@example.org", "team": "ops"})
        untagged = moto.user("bob", tags={"team": "ops"})
        found = read(config(moto.url, owner_tag="email"))
        assert found[tagged].owner == "alice@example.org"
        assert found[untagged].owner is None
        assert read(config(moto.url))[tagged].owner is None

    def test_last_used_is_read_only_when_asked(self, moto: Moto) -> None:
        """last_used adds when the key was last used ('never' for a new key)."""
        key_id = moto.user("alice")
        assert read(config(moto.url, last_used=True))[key_id].labels["last_used"] == "never"
        assert "last_used" not in read(config(moto.url))[key_id].labels


class TestPasses:
    def test_the_warn_line_and_a_rotation(self, moto: Moto, database: Database) -> None:
        """A key 2 days from max_age warns; rotated (new key, old one off), it leaves silently.

        moto dates both keys at its real now, so in the pass's (later) time the new key is as
        old as the first was: only the old key's notices are the point here.
        """
        old = moto.user("alice")
        clock = FixedClock(moto.created("alice", old) + MAX_AGE - 2 * DAY)
        sink = RecordingSink()
        source = AwsSource(config(moto.url))
        try:
            run = checker(database, clock, [source], sink).run
            assert not run().degraded
            (notice,) = sink.received
            assert sentence(notice, "day") == (
                f"Warn: Access Key alice (ID {old}) is due for rotation in less than 3 days."
            )
            new = moto.key("alice")
            moto.deactivate("alice", old)
            clock.advance(DAY)
            run()
            assert [key.token_id for key in source.found()] == [new]
        finally:
            source.close()
        assert [n.kind for n in sink.received if n.token_id == old] == [NoticeKind.EXPIRING]

    def test_past_its_maximum_age(self, moto: Moto, database: Database) -> None:
        """A key an hour past max_age gets the past-its-age line, once."""
        key_id = moto.user("alice")
        clock = FixedClock(moto.created("alice", key_id) + MAX_AGE + timedelta(hours=1))
        sink = RecordingSink()
        source = AwsSource(config(moto.url))
        try:
            checker(database, clock, [source], sink).run()
        finally:
            source.close()
        (notice,) = sink.received
        assert notice.kind is NoticeKind.EXPIRED
        assert sentence(notice, "day") == (
            f"Warn: Access Key alice (ID {key_id}) is past its maximum age and due for rotation."
        )

    def test_a_key_long_overdue_when_first_seen_is_told_once(
        self, moto: Moto, database: Database
    ) -> None:
        """A key a year past max_age when the daemon first sees it: told, once per sink.

        An expired token seen this late would be let go silently (the lookback); a key past
        its age still works, so it is the one an operator most needs to hear about.
        """
        key_id = moto.user("alice")
        clock = FixedClock(moto.created("alice", key_id) + MAX_AGE + timedelta(days=365))
        sink = RecordingSink()
        source = AwsSource(config(moto.url))
        try:
            run = checker(database, clock, [source], sink)
            run.run()
            clock.advance(timedelta(days=2))  # past the backoff: still told only once
            run.run()
        finally:
            source.close()
        assert [(n.token_id, n.kind) for n in sink.received] == [(key_id, NoticeKind.EXPIRED)]

    def test_a_named_user_that_is_no_user(self, moto: Moto, database: Database) -> None:
        """A name in users that IAM does not know fails that name alone; the rest warn."""
        key_id = moto.user("alice")
        clock = FixedClock(moto.created("alice", key_id) + MAX_AGE - DAY)
        sink = RecordingSink()
        source = AwsSource(config(moto.url, users=("alice", "ghost")))
        try:
            with capture_logs() as logs:
                report = checker(database, clock, [source], sink).run()
        finally:
            source.close()
        assert report.failed_sources == ["aws"]
        assert [n.token_id for n in sink.received] == [key_id]
        (failed,) = [entry for entry in logs if entry["event"] == "source.failed"]
        assert (failed["reason"], failed["partial"]) == ("user 'ghost': no such IAM user", True)


class TestRefusals:
    def test_refused_and_allowed_keys(self, moto: Moto, database: Database) -> None:
        """Signed by a key without a policy the source fails alone; with the docs' policy, it reads.

        The policy is the JSON of docs/sources.md's aws section, so the documented
        permissions are the ones a pass (with owner_tag and last_used) needs.
        """
        (policy,) = re.findall(r"```json\n(.*?)```", aws_section(), flags=re.DOTALL)
        reader = moto.signer("notifier-reader", policy)
        refused = moto.signer("alice")
        clock = FixedClock(moto.created("alice", refused[0]) + MAX_AGE - DAY)
        allowed = AwsSource(
            config(moto.url, name="aws:ok", key=reader, owner_tag="owner", last_used=True)
        )
        denied = AwsSource(config(moto.url, name="aws:refused", key=refused))
        sink = RecordingSink()
        try:
            with moto.checking_keys(), capture_logs() as logs:
                report = checker(database, clock, [denied, allowed], sink).run()
        finally:
            allowed.close()
            denied.close()
        assert report.failed_sources == ["aws:refused"]
        assert sorted(n.token_name for n in sink.received) == ["alice", "notifier-reader"]
        (failed,) = [entry for entry in logs if entry["event"] == "source.failed"]
        assert failed["reason"] == (
            f"{moto.url}: ListUsers: AccessDenied: User: arn:aws:iam::123456789012:user/alice"
            " is not authorized to perform: iam:ListUsers (see docs/sources.md for the permissions)"
        )
        assert refused[1] not in repr(logs)

    def test_an_unknown_key(self, moto: Moto) -> None:
        """A key IAM does not know is InvalidClientTokenId, and the message holds no secret."""
        source = AwsSource(config(moto.url))
        try:
            with moto.checking_keys(), pytest.raises(SourceError) as raised:
                source.read()
        finally:
            source.close()
        assert str(raised.value) == (
            f"{moto.url}: ListUsers: InvalidClientTokenId: "
            "The security token included in the request is invalid."
        )
        assert SECRET not in str(raised.value)

    def test_an_unreachable_endpoint(self) -> None:
        """An endpoint nobody answers at is a SourceError naming it, after bounded retries."""
        endpoint = f"http://127.0.0.1:{free_port()}"
        with pytest.raises(SourceError) as raised:
            read(config(endpoint, timeout=timedelta(seconds=2)))
        assert str(raised.value).startswith(
            f"{endpoint}: EndpointConnectionError: Could not connect to the endpoint URL"
        )


def aws_section() -> str:
    text = DOC.read_text(encoding="utf-8")
    return text.split("\n## aws\n", 1)[1].split("\n## ", 1)[0]


# --- IAM's documented answers, on loopback -------------------------------------------------------

NAMESPACE = "https://iam.amazonaws.com/doc/2010-05-08/"
CREATED = datetime(2027, 1, 1, tzinfo=UTC)


def answer(action: str, result: str) -> Response:
    """A Query API answer: ``<Action>Response/<Action>Result`` and its request id."""
    body = (
        f'<{action}Response xmlns="{NAMESPACE}"><{action}Result>{result}</{action}Result>'
        f"<ResponseMetadata><RequestId>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</RequestId>"
        f"</ResponseMetadata></{action}Response>"
    )
    return Response(body, content_type="text/xml")


def failure(code: str, message: str, status: int) -> Response:
    """A Query API error: ``ErrorResponse/Error`` with Type, Code and Message."""
    kind = "Receiver" if status >= 500 else "Sender"
    body = (
        f'<ErrorResponse xmlns="{NAMESPACE}"><Error><Type>{kind}</Type><Code>{code}</Code>'
        f"<Message>{message}</Message></Error>"
        "<RequestId>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</RequestId></ErrorResponse>"
    )
    return Response(body, status=status, content_type="text/xml")


def users_page(names: list[str], marker: str | None) -> Response:
    members = "".join(
        f"<member><Path>/</Path><UserName>{name}</UserName><UserId>AIDA{n:016d}</UserId>"
        f"<Arn>arn:aws:iam::123456789012:user/{name}</Arn>"
        "<CreateDate>2026-01-01T00:00:00Z</CreateDate></member>"
        for n, name in enumerate(names)
    )
    more = f"<IsTruncated>true</IsTruncated><Marker>{marker}</Marker>" if marker else ""
    return answer(
        "ListUsers", f"<Users>{members}</Users>{more or '<IsTruncated>false</IsTruncated>'}"
    )


def keys_of(user: str) -> Response:
    """One active key, created at CREATED, and one inactive key."""
    member = (
        "<member><UserName>{user}</UserName><AccessKeyId>{key_id}</AccessKeyId>"
        "<Status>{status}</Status><CreateDate>2027-01-01T00:00:00Z</CreateDate></member>"
    )
    members = member.format(user=user, key_id=key_id(user), status="Active") + member.format(
        user=user, key_id=key_id(user) + "OLD", status="Inactive"
    )
    return answer(
        "ListAccessKeys",
        f"<UserName>{user}</UserName><AccessKeyMetadata>{members}</AccessKeyMetadata>"
        "<IsTruncated>false</IsTruncated>",
    )


def key_id(user: str) -> str:
    return "AKIA" + user.upper().ljust(16, "X")


class LoopbackIam:
    """An IAM endpoint: ListUsers in *pages* (joined by markers m1, m2, ...), one key a user.

    *before* may answer a request first (an error, a wait); each request's form is kept.
    """

    def __init__(
        self,
        pages: list[list[str]],
        before: Callable[[dict[str, str]], Response | None] = lambda _: None,
    ) -> None:
        self.pages = pages
        self.before = before
        self.requests: list[dict[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        params = {k: v[0] for k, v in parse_qs(request.get_data(as_text=True)).items()}
        with self._lock:
            self.requests.append(params)
        early = self.before(params)
        if early is not None:
            return early
        if params["Action"] == "ListUsers":
            index = int(params.get("Marker", "m0")[1:])
            last = index == len(self.pages) - 1
            return users_page(self.pages[index], None if last else f"m{index + 1}")
        if params["Action"] == "ListAccessKeys":
            return keys_of(params["UserName"])
        return failure("InvalidAction", f"not played here: {params['Action']}", 400)

    def calls(self, action: str) -> list[dict[str, str]]:
        return [params for params in self.requests if params["Action"] == action]


def serve(server: HTTPServer, iam: LoopbackIam) -> str:
    server.expect_request("/", method="POST").respond_with_handler(iam)
    return server.url_for("/").rstrip("/")


class TestLoopback:
    def test_users_over_several_pages(self, httpserver: HTTPServer) -> None:
        """ListUsers is followed by its Marker, 1,000 a page, and every user's keys are read."""
        iam = LoopbackIam([["ann", "ben"], ["cat"], ["dan"]])
        found = read(config(serve(httpserver, iam)))
        assert sorted(found) == sorted(key_id(user) for user in ("ann", "ben", "cat", "dan"))
        assert found[key_id("cat")].expires_at == CREATED + MAX_AGE
        pages = iam.calls("ListUsers")
        assert [params.get("Marker") for params in pages] == [None, "m1", "m2"]
        assert {params["MaxItems"] for params in pages} == {str(PAGE_SIZE)}

    def test_throttling_is_retried(self, httpserver: HTTPServer) -> None:
        """A ThrottlingException is retried after botocore's backoff, and the read succeeds."""
        throttled: list[bool] = []

        def once(params: dict[str, str]) -> Response | None:
            if params["Action"] == "ListUsers" and not throttled:
                throttled.append(True)
                return failure("ThrottlingException", "Rate exceeded", 400)
            return None

        iam = LoopbackIam([["ann"]], before=once)
        assert list(read(config(serve(httpserver, iam)))) == [key_id("ann")]
        assert len(iam.calls("ListUsers")) == 2

    def test_a_5xx_is_retried_a_bounded_number_of_times(self, httpserver: HTTPServer) -> None:
        """An InternalFailure every time fails the source after MAX_ATTEMPTS requests."""
        iam = LoopbackIam(
            [["ann"]],
            before=lambda _: failure("InternalFailure", "We encountered an error.", 500),
        )
        endpoint = serve(httpserver, iam)
        with pytest.raises(SourceError) as raised:
            read(config(endpoint))
        assert str(raised.value) == (
            f"{endpoint}: ListUsers: InternalFailure: We encountered an error."
        )
        assert len(iam.calls("ListUsers")) == MAX_ATTEMPTS

    def test_a_timeout(self, threaded: HTTPServer) -> None:
        """An endpoint that does not answer within the timeout fails the source, bounded."""
        release = threading.Event()

        def hold(params: dict[str, str]) -> Response | None:
            del params  # every request waits
            release.wait(10)
            return None

        iam = LoopbackIam([["ann"]], before=hold)
        endpoint = serve(threaded, iam)
        try:
            with pytest.raises(SourceError) as raised:
                read(config(endpoint, timeout=timedelta(milliseconds=300)))
        finally:
            release.set()
        assert str(raised.value).startswith(f"{endpoint}: ReadTimeoutError: Read timeout")
        assert len(iam.calls("ListUsers")) == MAX_ATTEMPTS

    def test_keys_are_listed_side_by_side(self, threaded: HTTPServer) -> None:
        """Each ListAccessKeys waits for seven others: read one by one, none would answer.

        The barrier breaks after 8 s and the request then fails, so a sequential read fails
        instead of hanging; no time is measured.
        """
        barrier = threading.Barrier(PARALLEL_USERS, timeout=8)

        def together(params: dict[str, str]) -> Response | None:
            if params["Action"] == "ListAccessKeys":
                try:
                    barrier.wait()
                except threading.BrokenBarrierError:
                    return failure("InvalidAction", "alone", 400)
            return None

        users = [f"user{n:02d}" for n in range(4 * PARALLEL_USERS)]
        iam = LoopbackIam([users], before=together)
        found = read(config(serve(threaded, iam), timeout=timedelta(seconds=10)))
        assert sorted(found) == sorted(key_id(user) for user in users)
