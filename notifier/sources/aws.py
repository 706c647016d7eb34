"""The ``aws`` source: AWS IAM users' access keys, due for rotation at a maximum age.

AWS never expires an access key. What an account's policy expires is its *age*: AWS Config's
``access-keys-rotated`` rule finds an active key older than ``maxAccessKeyAge`` (90 days by
default) non-compliant. So a key's "expiry" here is its ``CreateDate`` plus ``max_age``, and
its line says it is due for rotation, not that it expires. The credential's id is the access
key id (``AKIA...``; not a secret), its name the IAM user's; the secret access key is never
read, and AWS returns it only when a key is created anyway. Inactive keys are left out: they
sign nothing, so nothing needs rotating.

Each pass lists the users (``ListUsers``, 1,000 a page, ``Marker`` to the next) unless
``users`` names them, then each user's keys (``ListAccessKeys``), :data:`PARALLEL_USERS` at a
time over one client (boto3's clients are thread-safe, its sessions are not). With
``owner_tag``, the tags of each user who has an active key (``ListUserTags``); with
``last_used``, when each active key was last used (``GetAccessKeyLastUsed``, one call per
key, so off by default). Every request has the configured connect and read timeout, and
botocore's ``standard`` retry mode retries throttling and 5xx answers with backoff, three
attempts at most. Read-only: ``iam:ListUsers``, ``iam:ListAccessKeys`` and, as configured,
``iam:ListUserTags`` and ``iam:GetAccessKeyLastUsed``.

boto3 is an optional extra (``pip install 'credential-expiry-notifier[aws]'``), imported
only when the source is built: the settings import this module, and start-up time matters.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from notifier.config.options import KindOptions, OptionError, option_duration, option_list
from notifier.core.durations import format_in_one_unit
from notifier.core.model import CredentialKind, WatchedToken
from notifier.core.policy import in_window
from notifier.sources import ReadsWhole, SourceError
from notifier.sources.api import check_url

if TYPE_CHECKING:
    from botocore.exceptions import BotoCoreError, ClientError
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_iam.type_defs import AccessKeyMetadataTypeDef

OPTIONS = KindOptions(
    (
        "max_age",
        "profile",
        "region",
        "endpoint_url",
        "access_key_id",
        "secret_access_key",
        "users",
        "owner_tag",
        "last_used",
        "timeout",
    ),
    secrets=frozenset({"secret_access_key"}),
)
DEFAULT_MAX_AGE = "90d"  # AWS Config's access-keys-rotated rule: maxAccessKeyAge defaults to 90
PARALLEL_USERS = 8  # users whose keys are listed at once over the one client
MAX_ATTEMPTS = 3  # each request, retries included (botocore's standard mode default)
GLOBAL_REGION = "us-east-1"  # where IAM's global endpoint signs, when no region is configured
PAGE_SIZE = 1000  # ListUsers' MaxItems at most: fewest round trips
INSTALL = "pip install 'credential-expiry-notifier[aws]'"
_USER_NAME = re.compile(r"[\w+=,.@-]{1,64}")  # IAM's UserName pattern and length
_REGION = re.compile(r"[a-z]{2}(-[a-z0-9]+)+")  # us-east-1, eu-central-2, us-gov-west-1
_GONE = "NoSuchEntity"  # IAM's answer for a user (or key) that does not exist
_REFUSED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})


@dataclass(frozen=True, slots=True)
class AwsSourceConfig:
    """An AWS account's IAM, how to reach and sign for it, and the age keys are due at."""

    name: str
    max_age: timedelta
    profile: str | None
    region: str | None
    endpoint_url: str | None
    access_key_id: str | None
    secret_access_key: str | None = field(repr=False)
    users: tuple[str, ...]
    owner_tag: str | None
    last_used: bool
    timeout: timedelta


def check_options(name: str, options: Mapping[str, Any]) -> AwsSourceConfig:
    """Check the options of the aws source *name*."""
    if not _installed("boto3"):
        raise OptionError(
            None,
            f"needs boto3, which is not installed: {INSTALL}, or leave {name} out of "
            "NOTIFIER_SOURCES (and the config file)",
        )
    access_key_id = _text(options, "access_key_id", "an access key id such as AKIA...")
    secret = _text(options, "secret_access_key", "the secret access key of access_key_id")
    if (access_key_id is None) != (secret is None):
        missing = "secret_access_key" if secret is None else "access_key_id"
        raise OptionError(missing, "give access_key_id and secret_access_key together, or neither")
    profile = _text(options, "profile", "a profile name of the AWS config file")
    if profile is not None and access_key_id is not None:
        raise OptionError("profile", "give a profile or access_key_id, not both")
    region = _text(options, "region", "a region such as us-east-1")
    if region is not None and not _REGION.fullmatch(region):
        raise OptionError("region", f"{region!r} is not a region such as us-east-1")
    endpoint = options.get("endpoint_url")
    users = option_list("users", options.get("users"))
    for user in users:
        if not _USER_NAME.fullmatch(user):
            raise OptionError("users", f"{user!r} is not an IAM user name")
    return AwsSourceConfig(
        name=name,
        max_age=option_duration("max_age", options.get("max_age"), DEFAULT_MAX_AGE),
        profile=profile,
        region=region,
        endpoint_url=(
            None
            if endpoint is None
            else check_url("endpoint_url", endpoint, "https://iam.amazonaws.com")
        ),
        access_key_id=access_key_id,
        secret_access_key=secret,
        users=tuple(dict.fromkeys(users)),
        owner_tag=_text(options, "owner_tag", "a tag key such as owner or email"),
        last_used=_flag(options.get("last_used")),
        timeout=option_duration("timeout", options.get("timeout"), "10s"),
    )


def _installed(module: str) -> bool:
    """Whether *module* can be imported, without importing it (boto3 takes a while)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # sys.modules[module] is None: its import is blocked
        return False


def _text(options: Mapping[str, Any], option: str, expected: str) -> str | None:
    value = options.get(option)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise OptionError(option, f"expected {expected}")
    return value.strip()


def _flag(value: object) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower() if isinstance(value, str) else ""
    if text in {"true", "1", "yes", "on"}:
        return True
    if text in {"false", "0", "no", "off"}:
        return False
    raise OptionError("last_used", "expected true or false")


class AwsSource(ReadsWhole):
    """The active access keys of an AWS account's IAM users."""

    def __init__(self, config: AwsSourceConfig) -> None:
        self.name = config.name
        self._config = config
        self._client: IAMClient | None = None
        self._problems: tuple[str, ...] = ()

    def snapshot(self, now: datetime) -> dict[str, WatchedToken]:
        """Every active key, by id."""
        del now  # read as it stands
        return self.read()

    def in_view(
        self, token: WatchedToken, now: datetime, horizon: timedelta, lookback: timedelta
    ) -> bool:
        """In the window, or past its maximum age however long ago.

        A key past its maximum age still works, so it stays in the window until it is
        rotated, however long ago it became due: its notice is sent once per sink (the
        policy's expired notice), however late the daemon first sees it.
        """
        overdue = token.expires_at is not None and token.expires_at <= now
        return overdue or in_window(token, now, horizon, lookback)

    def problems(self) -> tuple[str, ...]:
        """The users named in ``users`` that the last window did not find."""
        return self._problems

    def close(self) -> None:
        """Close the client's connection pool."""
        if self._client is not None:
            self._client.close()

    def read(self) -> dict[str, WatchedToken]:
        """Every active access key, by access key id."""
        iam = self._iam()
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - see _iam

        named = self._config.users
        try:
            users = list(named) if named else self._user_names(iam)
            per_user = self._each(users, lambda user: self._user_keys(iam, user))
        except (BotoCoreError, ClientError) as error:
            raise self._failure(error) from None
        found: dict[str, WatchedToken] = {}
        missing: list[str] = []
        for user, keys in zip(users, per_user, strict=True):
            if keys is None:  # deleted since ListUsers, or a name in `users` that is no user
                missing.append(user)
                continue
            for key in keys:
                found[key.token_id] = key
        self._problems = tuple(f"user {user!r}: no such IAM user" for user in missing if named)
        return found

    # --- requests -----------------------------------------------------------------------------

    def _iam(self) -> IAMClient:
        """The one IAM client, built on the first read (a bad profile then fails that read)."""
        if self._client is None:
            self._client = self._new_client()
        return self._client

    def _new_client(self) -> IAMClient:
        # boto3 only for a pass that reads AWS: the settings import this module (#13).
        import boto3.session  # noqa: PLC0415
        from botocore.config import Config  # noqa: PLC0415
        from botocore.exceptions import BotoCoreError  # noqa: PLC0415

        config = self._config
        seconds = config.timeout.total_seconds()
        try:
            session = boto3.session.Session(
                aws_access_key_id=config.access_key_id,
                aws_secret_access_key=config.secret_access_key,
                profile_name=config.profile,
                region_name=config.region,
            )
            return session.client(
                "iam",
                # IAM is global, but botocore needs a region to pick the partition and sign.
                region_name=session.region_name or GLOBAL_REGION,
                endpoint_url=config.endpoint_url,
                config=Config(
                    connect_timeout=seconds,
                    read_timeout=seconds,
                    retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
                    max_pool_connections=PARALLEL_USERS,
                ),
            )
        except BotoCoreError as error:  # an unknown profile, a bad config file
            raise SourceError(f"aws: {type(error).__name__}: {self._redact(str(error))}") from None

    def _user_names(self, iam: IAMClient) -> list[str]:
        pages = iam.get_paginator("list_users").paginate(PaginationConfig={"PageSize": PAGE_SIZE})
        return [user["UserName"] for page in pages for user in page["Users"]]

    def _each(
        self, users: list[str], read: Callable[[str], list[WatchedToken] | None]
    ) -> list[list[WatchedToken] | None]:
        """*read* of each user, :data:`PARALLEL_USERS` at a time, in order.

        The first failure fails the read, and the users not started yet are dropped.
        """
        if len(users) <= 1:
            return [read(user) for user in users]
        pool = ThreadPoolExecutor(max_workers=min(PARALLEL_USERS, len(users)))
        try:
            return list(pool.map(read, users))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _user_keys(self, iam: IAMClient, user: str) -> list[WatchedToken] | None:
        """The active keys of *user*; None when there is no such user (any more)."""
        from botocore.exceptions import ClientError  # noqa: PLC0415 - loaded by _iam already

        try:
            pages = iam.get_paginator("list_access_keys").paginate(UserName=user)
            active = [key for page in pages for key in page["AccessKeyMetadata"] if _active(key)]
            if not active:
                return []
            owner = self._owner(iam, user) if self._config.owner_tag else None
            return [self._key(iam, user, key, owner) for key in active]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == _GONE:
                return None
            raise

    def _owner(self, iam: IAMClient, user: str) -> str | None:
        pages = iam.get_paginator("list_user_tags").paginate(UserName=user)
        for page in pages:
            for tag in page["Tags"]:
                if tag["Key"] == self._config.owner_tag:
                    return tag["Value"]
        return None

    def _last_used(self, iam: IAMClient, key_id: str) -> dict[str, str]:
        used = iam.get_access_key_last_used(AccessKeyId=key_id).get("AccessKeyLastUsed") or {}
        when = used.get("LastUsedDate")
        if when is None:
            return {"last_used": "never"}
        return {"last_used": _rfc3339(when), "last_used_service": used.get("ServiceName", "")}

    def _failure(self, error: BotoCoreError | ClientError) -> SourceError:
        """*error* as a SourceError naming the endpoint, the operation and AWS's code."""
        from botocore.exceptions import ClientError  # noqa: PLC0415 - see _iam

        where = self._where()
        if isinstance(error, ClientError):
            details = error.response.get("Error", {})
            code = details.get("Code", "Unknown")
            message = self._redact(" ".join(str(details.get("Message", "")).split()))
            hint = " (see docs/sources.md for the permissions)" if code in _REFUSED else ""
            return SourceError(f"{where}: {error.operation_name}: {code}: {message}{hint}")
        # EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, NoCredentialsError
        return SourceError(f"{where}: {type(error).__name__}: {self._redact(str(error))}")

    def _where(self) -> str:
        if self._client is not None:
            return str(self._client.meta.endpoint_url)
        return self._config.endpoint_url or "aws"

    def _redact(self, text: str) -> str:
        """*text* without the secret key, should a library ever repeat it."""
        secret = self._config.secret_access_key
        return text.replace(secret, "***") if secret else text

    # --- decoding -----------------------------------------------------------------------------

    def _key(
        self, iam: IAMClient, user: str, key: AccessKeyMetadataTypeDef, owner: str | None
    ) -> WatchedToken:
        key_id = key.get("AccessKeyId")
        created = key.get("CreateDate")
        if not key_id or created is None:
            raise SourceError(f"{self._where()}: ListAccessKeys: a key of {user!r} lacks its id")
        created = created.astimezone(UTC)
        labels = {
            "user": user,
            "created": _rfc3339(created),
            "max_age": format_in_one_unit(self._config.max_age),
        }
        if self._config.last_used:
            labels |= self._last_used(iam, key_id)
        return WatchedToken(
            source=self.name,
            token_id=key_id,
            name=key.get("UserName") or user,
            expires_at=created + self._config.max_age,
            owner=owner,
            created_at=created,
            labels=labels,
            credential_kind=CredentialKind.ACCESS_KEY,
        )


def _active(key: AccessKeyMetadataTypeDef) -> bool:
    """Only an active key signs requests; Inactive (and Expired) keys need no rotation."""
    return key.get("Status") == "Active"


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
