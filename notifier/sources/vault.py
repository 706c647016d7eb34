"""The ``vault`` source: Vault/OpenBao tokens by accessor, and leases under given prefixes.

Every pass lists the token accessors (``LIST auth/token/accessors``) and looks each one up
(``auth/token/lookup-accessor``): the credential's id is the accessor, never the token, and
its name the display name; a token without an expiry (a root token) is never expiring. A
token renewed since (a later ``expire_time``) is the same id with a later expiry, which
closes its loop. With ``lease_prefixes`` set, the leases under each prefix are listed
(``LIST sys/leases/lookup/<prefix>``, recursively) and looked up (``sys/leases/lookup``).

The lookups run :data:`PARALLEL_LOOKUPS` at a time over one connection pool, so a pass over
thousands of tokens takes a fraction of their round trips. Read-only: the source only lists
and looks up. The token it reads with needs ``list`` on
``auth/token/accessors``, ``update`` on ``auth/token/lookup-accessor`` and, for leases,
``list`` on ``sys/leases/lookup/<prefix>`` and ``update`` on ``sys/leases/lookup``. Every
request has the configured timeout; a 429 or 503 answer's ``Retry-After`` is waited out, up
to the timeout, twice at most. The Vault API and OpenBao's are the same here.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from notifier.config.options import KindOptions, OptionError, option_duration, option_list
from notifier.core.model import CredentialKind, WatchedToken
from notifier.sources import ReadsWhole, SourceError

if TYPE_CHECKING:
    import httpx

OPTIONS = KindOptions(
    ("address", "token", "namespace", "ca_file", "timeout", "lease_prefixes"),
    secrets=frozenset({"token"}),
)
_RETRY_STATUSES = frozenset({429, 503})
_RETRIES = 2
_BAD_REQUEST = 400
_NOT_FOUND = 404
_FORBIDDEN = 403
PARALLEL_LOOKUPS = 8  # lookups in flight at once over the client's pool


@dataclass(frozen=True, slots=True)
class VaultSourceConfig:
    """A Vault or OpenBao server, the token to read it with, and the lease prefixes to watch."""

    name: str
    address: str
    token: str = field(repr=False)
    namespace: str | None
    ca_file: Path | None
    timeout: timedelta
    lease_prefixes: tuple[str, ...]


def check_options(name: str, options: Mapping[str, Any]) -> VaultSourceConfig:
    """Check the options of the vault source *name*."""
    address = options.get("address")
    if not isinstance(address, str) or not address.strip():
        raise OptionError("address", "is required: the server's URL, e.g. https://vault:8200")
    address = address.strip().rstrip("/")
    try:
        url = urlsplit(address)
        port_ok = url.port is None or url.port > 0
    except ValueError:
        url, port_ok = None, False
    if url is None or url.scheme not in {"http", "https"} or not url.hostname or not port_ok:
        raise OptionError("address", f"{address!r} is not an http(s) URL")
    token = options.get("token")
    if not isinstance(token, str) or not token.strip():
        raise OptionError("token", "is required: a token that may list and look up accessors")
    namespace = options.get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or not namespace.strip()):
        raise OptionError("namespace", "expected a namespace path such as team-a")
    ca_file = options.get("ca_file")
    if ca_file is not None:
        if not isinstance(ca_file, str) or not Path(ca_file).is_file():
            raise OptionError("ca_file", f"{ca_file!r} is not a readable file")
        ca_file = Path(ca_file)
    prefixes = tuple(
        prefix.strip("/") + "/"
        for prefix in option_list("lease_prefixes", options.get("lease_prefixes"))
    )
    return VaultSourceConfig(
        name=name,
        address=address,
        token=token.strip(),
        namespace=namespace.strip() if isinstance(namespace, str) else None,
        ca_file=ca_file,
        timeout=option_duration("timeout", options.get("timeout"), "10s"),
        lease_prefixes=prefixes,
    )


class VaultSource(ReadsWhole):
    """Tokens (and leases) of a Vault or OpenBao server."""

    def __init__(
        self,
        config: VaultSourceConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # httpx only for a pass that reads Vault: the settings import this module (#13).
        import httpx  # noqa: PLC0415

        self.name = config.name
        self._config = config
        self._sleep = sleep
        headers = {"X-Vault-Token": config.token, "X-Vault-Request": "true"}
        if config.namespace:
            headers["X-Vault-Namespace"] = config.namespace
        self._client = httpx.Client(
            base_url=f"{config.address}/v1/",
            headers=headers,
            timeout=config.timeout.total_seconds(),
            # httpx deprecates verify=<path>: the system's defaults, trusting the file too.
            verify=ssl.create_default_context(cafile=str(config.ca_file))
            if config.ca_file
            else True,
            follow_redirects=False,
        )

    def snapshot(self, now: datetime) -> dict[str, WatchedToken]:
        """Vault's every token (and lease under the prefixes), by id."""
        del now  # read as it stands
        return self.read()

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def read(self) -> dict[str, WatchedToken]:
        """Every token, and every lease under the prefixes, by id."""
        found: dict[str, WatchedToken] = {}
        accessors = self._list("auth/token/accessors")
        looked_up = self._lookups(
            "auth/token/lookup-accessor", [{"accessor": accessor} for accessor in accessors]
        )
        for accessor, data in zip(accessors, looked_up, strict=True):
            if data is not None:  # revoked between the list and the lookup
                token = self._token(accessor, data)
                found[token.token_id] = token
        for prefix in self._config.lease_prefixes:
            lease_ids = self._leases(prefix)
            bodies = [{"lease_id": lease_id} for lease_id in lease_ids]
            for lease_id, data in zip(
                lease_ids, self._lookups("sys/leases/lookup", bodies, method="PUT"), strict=True
            ):
                if data is not None:
                    lease = self._lease(lease_id, data)
                    found[lease.token_id] = lease
        return found

    def _lookups(
        self, path: str, bodies: list[dict[str, str]], *, method: str = "POST"
    ) -> list[dict[str, Any] | None]:
        """Each of *bodies* looked up at *path*, :data:`PARALLEL_LOOKUPS` at a time, in order.

        The first failure fails the read, and the lookups not started yet are dropped.
        """
        if len(bodies) <= 1:
            return [self._lookup(path, body, method=method) for body in bodies]
        pool = ThreadPoolExecutor(max_workers=min(PARALLEL_LOOKUPS, len(bodies)))
        try:
            return list(pool.map(lambda body: self._lookup(path, body, method=method), bodies))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    # --- requests -----------------------------------------------------------------------------

    def _list(self, path: str) -> list[str]:
        """The keys under *path*; none when the path holds nothing (Vault answers 404)."""
        response = self._request("LIST", path)
        if response.status_code == _NOT_FOUND:
            return []
        keys = self._data(response, path).get("keys") or []
        if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
            raise SourceError(f"{self._config.address}: {path}: keys is not a list of names")
        return keys

    def _leases(self, prefix: str) -> list[str]:
        """Every lease id under *prefix*, walking its sub-prefixes."""
        found: list[str] = []
        pending = [prefix]
        while pending:
            current = pending.pop()
            for key in self._list(f"sys/leases/lookup/{current}"):
                (pending if key.endswith("/") else found).append(current + key)
        return sorted(found)

    def _lookup(
        self, path: str, body: dict[str, str], *, method: str = "POST"
    ) -> dict[str, Any] | None:
        """A lookup's data; None when the accessor or lease is gone (Vault answers 400)."""
        response = self._request(method, path, body)
        if response.status_code == _BAD_REQUEST:
            return None
        return self._data(response, path)

    def _request(
        self, method: str, path: str, body: dict[str, str] | None = None
    ) -> httpx.Response:
        import httpx  # noqa: PLC0415 - loaded by __init__ already; see there

        address = self._config.address
        for attempt in range(_RETRIES + 1):
            try:
                response = self._client.request(method, path, json=body)
            except httpx.HTTPError as error:
                raise SourceError(f"{address}: {type(error).__name__}: {error}") from None
            if response.status_code not in _RETRY_STATUSES or attempt == _RETRIES:
                return response
            self._sleep(self._retry_after(response))
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns

    def _retry_after(self, response: httpx.Response) -> float:
        """How long the server asked to wait, bounded by the timeout (1 s when unsaid)."""
        text = response.headers.get("Retry-After", "1")
        try:
            wait = float(text)
        except ValueError:
            wait = 1.0
        return min(max(wait, 0.0), self._config.timeout.total_seconds())

    def _data(self, response: httpx.Response, path: str) -> dict[str, Any]:
        address = self._config.address
        if response.status_code == _FORBIDDEN:
            raise SourceError(f"{address}: {path}: permission denied (see docs/sources.md)")
        if response.status_code >= _BAD_REQUEST:
            raise SourceError(f"{address}: {path}: {response.status_code} {_errors(response)}")
        try:
            document = response.json()
        except ValueError:
            raise SourceError(f"{address}: {path}: the answer is not JSON") from None
        data = document.get("data") if isinstance(document, dict) else None
        if not isinstance(data, dict):
            raise SourceError(f"{address}: {path}: the answer has no data")
        return data

    # --- decoding -----------------------------------------------------------------------------

    def _token(self, accessor: str, data: Mapping[str, Any]) -> WatchedToken:
        meta = data.get("meta") or {}
        if not isinstance(meta, dict):
            meta = {}
        policies = data.get("policies") or []
        labels = {
            "policies": ",".join(str(policy) for policy in policies),
            "renewable": "true" if data.get("renewable") else "false",
            "path": str(data.get("path") or ""),
            "type": str(data.get("type") or ""),
            **{f"meta.{key}": str(value) for key, value in meta.items()},
        }
        owner = meta.get("owner")
        created = data.get("creation_time")
        return WatchedToken(
            source=self.name,
            token_id=accessor,
            name=str(data.get("display_name") or accessor),
            expires_at=self._time(data.get("expire_time"), accessor),
            owner=None if owner is None else str(owner),
            created_at=(
                datetime.fromtimestamp(created, tz=UTC)
                if isinstance(created, int | float)
                else None
            ),
            labels=labels,
        )

    def _lease(self, lease_id: str, data: Mapping[str, Any]) -> WatchedToken:
        path = str(data.get("path") or lease_id.rpartition("/")[0])
        return WatchedToken(
            source=self.name,
            token_id=lease_id,
            name=path,
            expires_at=self._time(data.get("expire_time"), lease_id),
            created_at=self._time(data.get("issue_time"), lease_id),
            labels={"renewable": "true" if data.get("renewable") else "false", "path": path},
            credential_kind=CredentialKind.LEASE,
        )

    def _time(self, value: object, which: str) -> datetime | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise SourceError(f"{self._config.address}: {which}: {value!r} is not a time")
        try:
            moment = datetime.fromisoformat(_microseconds(value))
        except ValueError:
            raise SourceError(f"{self._config.address}: {which}: {value!r} is not a time") from None
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _microseconds(value: str) -> str:
    """Go's RFC 3339 times carry nanoseconds; Python 3.11's parser takes six digits at most."""
    head, dot, rest = value.partition(".")
    if not dot:
        return value
    digits = len(rest) - len(rest.lstrip("0123456789"))
    return f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"


def _errors(response: httpx.Response) -> str:
    try:
        errors = response.json().get("errors") or []
    except (ValueError, AttributeError):
        errors = []
    text = "; ".join(" ".join(str(error).split()) for error in errors)
    return text or response.reason_phrase
