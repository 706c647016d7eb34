"""The ``github`` source: an organisation's fine-grained personal access tokens, and classic ones.

**Fine-grained tokens.** With ``org`` set, every pass lists the fine-grained personal access
tokens approved to reach the organisation (``GET /orgs/{org}/personal-access-tokens``, 100 a
page, following the ``Link`` header). Only a GitHub App may call it: the source reads with an
installation token holding the "Personal access tokens" organisation permission (read),
either given (``token``) or minted by the source itself from the App's credentials
(``app_id``, ``installation_id``, ``private_key``): a JWT signed RS256 (``iat`` a minute
back, ``exp`` nine minutes on) is traded for an installation token
(``POST /app/installations/{id}/access_tokens``, asking for that one permission, read-only),
which is reused until five minutes before it expires. The credential's id is the token's
``token_id`` (the id GitHub's audit log and the organisation's settings show; it stays when
the token's grant is renewed), or ``grant:<id>`` where an older server sends no
``token_id``. Its expiry is ``token_expires_at`` (null: never expires); an expired token is
kept, for its expired notice. A grant the organisation revoked is no longer listed: its loop
resolves silently.

**Classic tokens.** Each configured ``name=token`` is checked with one ``GET /user`` made
with the token itself: the ``GitHub-Authentication-Token-Expiration`` header of the answer
is its expiry (no header: it never expires), the login its owner. The id is
``classic:<name>``, never the token. A token refused (401: expired or revoked) or unreadable
is that token's problem (:class:`notifier.sources.PartlyReadable`): the others are read, and
what it was last seen as stays watched, so an outage neither hides nor closes anything.

Read-only, every request bounded by ``timeout``; a 429 or 503, and GitHub's 403 carrying
``x-ratelimit-remaining: 0`` or ``Retry-After`` (its rate limits), are waited out twice at
most (notifier/sources/api.py).
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from notifier.config.options import KindOptions, OptionError, option_duration
from notifier.core.clock import Clock, SystemClock
from notifier.core.model import WatchedToken
from notifier.sources import ReadsWhole, SourceError
from notifier.sources.api import ApiClient, check_ca_file, check_url, parse_time

if TYPE_CHECKING:
    import httpx

OPTIONS = KindOptions(
    (
        "url",
        "org",
        "token",
        "app_id",
        "installation_id",
        "private_key",
        "classic_tokens",
        "ca_file",
        "timeout",
    ),
    secrets=frozenset({"token", "private_key", "classic_tokens"}),
)
DEFAULT_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
PER_PAGE = 100  # the most GitHub gives a page
JWT_BACKDATE = timedelta(seconds=60)  # GitHub: set iat 60 s in the past against clock drift
JWT_LIFETIME = timedelta(minutes=9)  # GitHub refuses an exp more than 10 minutes ahead
REMINT_BEFORE = timedelta(minutes=5)  # an installation token is replaced this long before expiry
# The only permission the minted token asks for, whatever else the App holds.
TOKEN_PERMISSIONS = {"organization_personal_access_tokens": "read"}
_UNAUTHORIZED = 401
_FORBIDDEN = 403
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ORG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_APP_ID = re.compile(r"[A-Za-z0-9._-]{1,100}")  # the numeric App ID, or its client ID (Iv…)
# "2023-01-01 00:00:00 UTC"; some tokens carry an offset instead: "2023-01-01 09:00:00 +0900"
_EXPIRATION = re.compile(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) (UTC|[+-]\d{4})")


# --- options ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GitHubApp:
    """A GitHub App's credentials, from which the source mints its installation tokens."""

    app_id: str  # the App's ID, or its client ID
    installation_id: int
    private_key: str = field(repr=False)  # PEM


@dataclass(frozen=True, slots=True)
class ClassicToken:
    """A personal access token to check, under the name the configuration gives it."""

    name: str
    token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class GitHubSourceConfig:
    """A GitHub (or GitHub Enterprise Server) API, what to read there, and how."""

    name: str
    url: str  # the API's root: https://api.github.com, https://HOST/api/v3
    org: str | None  # whose fine-grained tokens are listed; None: none are
    token: str | None = field(repr=False)  # an installation token, used as is
    app: GitHubApp | None
    classic_tokens: tuple[ClassicToken, ...]
    ca_file: Path | None
    timeout: timedelta


def check_options(name: str, options: Mapping[str, Any]) -> GitHubSourceConfig:
    """Check the options of the github source *name*."""
    url = check_url("url", options.get("url", DEFAULT_URL), "https://github.example.com/api/v3")
    org = _org(options.get("org"))
    token = options.get("token")
    if token is not None and (not isinstance(token, str) or not token.strip()):
        raise OptionError("token", "expected an installation token")
    app = _app(options)
    classic = _classic_tokens(options.get("classic_tokens"))
    if token is not None and app is not None:
        raise OptionError(
            "token", "give token or the app's app_id, installation_id and private_key, not both"
        )
    if org is None and (token is not None or app is not None):
        raise OptionError("org", "is required: the organisation whose fine-grained tokens to read")
    if org is not None and token is None and app is None:
        raise OptionError(
            "token",
            "is required with org: an installation token, or the app's app_id, "
            "installation_id and private_key",
        )
    if org is None and not classic:
        raise OptionError("org", "set org or classic_tokens (or both): what to watch")
    return GitHubSourceConfig(
        name=name,
        url=url,
        org=org,
        token=token.strip() if isinstance(token, str) else None,
        app=app,
        classic_tokens=classic,
        ca_file=check_ca_file("ca_file", options.get("ca_file")),
        timeout=option_duration("timeout", options.get("timeout"), "10s"),
    )


def _org(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _ORG.fullmatch(value.strip()):
        raise OptionError("org", f"{value!r} is not an organisation's login")
    return value.strip()


def _app(options: Mapping[str, Any]) -> GitHubApp | None:
    """The App's credentials: all three options, or none of them."""
    given = {key: options.get(key) for key in ("app_id", "installation_id", "private_key")}
    if all(value is None for value in given.values()):
        return None
    missing = [key for key, value in given.items() if value is None]
    if missing:
        raise OptionError(
            missing[0],
            "is required with the other app options: app_id, installation_id, private_key",
        )
    app_id = str(given["app_id"]).strip()
    if not _APP_ID.fullmatch(app_id):
        raise OptionError("app_id", "expected the App's ID (digits) or its client ID")
    installation = str(given["installation_id"]).strip()
    if not installation.isdigit() or int(installation) == 0:
        raise OptionError("installation_id", "expected the installation's numeric ID")
    key = given["private_key"]
    if not isinstance(key, str):
        raise OptionError("private_key", "expected the App's private key, PEM")
    # A PEM put in one line of an environment file: its line breaks written as \n.
    pem = key.strip().replace("\\n", "\n") if "\n" not in key.strip() else key.strip()
    if not (pem.startswith("-----BEGIN ") and "PRIVATE KEY-----" in pem.splitlines()[0]):
        raise OptionError("private_key", "expected the App's private key, PEM (-----BEGIN ...)")
    return GitHubApp(app_id=app_id, installation_id=int(installation), private_key=pem + "\n")


def _classic_tokens(value: object) -> tuple[ClassicToken, ...]:
    """``name=token`` entries (comma- or line-separated, or a TOML array), or a TOML table.

    No message quotes an entry: an entry is a token.
    """
    if value is None:
        return ()
    found: list[ClassicToken] = []
    for entry_name, token in _classic_pairs(value):
        if not isinstance(entry_name, str) or not _NAME.fullmatch(entry_name):
            raise OptionError(
                "classic_tokens",
                "a name must be letters, digits, '.', '_' or '-' (up to 64), starting with a "
                "letter or digit",
            )
        if not isinstance(token, str) or not token.strip():
            raise OptionError("classic_tokens", f"{entry_name}: the token is empty")
        if any(known.name == entry_name for known in found):
            raise OptionError("classic_tokens", f"{entry_name}: named twice")
        found.append(ClassicToken(entry_name, token.strip()))
    if not found:
        raise OptionError("classic_tokens", "has no name=token entry")
    return tuple(found)


def _classic_pairs(value: object) -> list[tuple[object, object]]:
    """The (name, token) pairs of the option, as given."""
    if isinstance(value, Mapping):
        return list(value.items())
    if isinstance(value, str):
        entries = [part.strip() for part in re.split(r"[,\n]", value)]
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        entries = [item.strip() for item in value]
    else:
        raise OptionError("classic_tokens", "expected name=token entries")
    pairs: list[tuple[object, object]] = []
    for number, entry in enumerate(entries, 1):
        if not entry:
            continue  # a trailing comma or line break
        entry_name, separator, token = entry.partition("=")
        if not separator:
            raise OptionError(
                "classic_tokens", f"entry {number} is not name=token (the name is missing)"
            )
        pairs.append((entry_name.strip(), token.strip()))
    return pairs


# --- the source ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Installation:
    """An installation token the source minted, and when GitHub said it expires."""

    token: str = field(repr=False)
    expires_at: datetime


class GitHubSource(ReadsWhole):
    """Fine-grained tokens of an organisation and configured classic tokens, from GitHub."""

    def __init__(
        self,
        config: GitHubSourceConfig,
        *,
        clock: Clock | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = config.name
        self._config = config
        self._clock = clock or SystemClock()
        self._sleep = sleep
        self._web = web_root(config.url)
        self._installation: _Installation | None = None
        self._signing_key: Any = None  # the App's key, loaded at the first mint
        self._org_api: ApiClient | None = None
        self._org_token: str | None = None  # the token self._org_api reads with
        self._classic_api: dict[str, ApiClient] = {}
        self._fine_grained: dict[str, WatchedToken] = {}
        self._classic: dict[str, WatchedToken] = {}
        self._problems: tuple[str, ...] = ()

    def snapshot(self, now: datetime) -> dict[str, WatchedToken]:
        """Every fine-grained and classic token, by id."""
        del now  # read as it stands
        return self.read()

    def problems(self) -> tuple[str, ...]:
        """What the last window could not read (the rest of it was read)."""
        return self._problems

    def close(self) -> None:
        """Close the connection pools."""
        for api in [self._org_api, *self._classic_api.values()]:
            if api is not None:
                api.close()
        self._org_api = None
        self._classic_api = {}

    def read(self) -> dict[str, WatchedToken]:
        """Every token, by id; a part that fails keeps what it read last.

        Raise :class:`SourceError` when no part could be read at all.
        """
        problems: list[str] = []
        parts = 0
        if self._config.org is not None:
            parts += 1
            try:
                self._fine_grained = self._read_fine_grained(self._config.org)
            except SourceError as error:
                problems.append(str(error))
                # The minted token may be what failed (revoked, the App reinstalled): the next
                # pass mints a fresh one rather than trust it until it expires.
                self._installation = None
        for classic in self._config.classic_tokens:
            parts += 1
            try:
                token = self._read_classic(classic)
            except SourceError as error:
                problems.append(f"classic token {classic.name}: {error}")
            else:
                self._classic[token.token_id] = token
        self._problems = tuple(problems)
        if problems and len(problems) == parts:
            raise SourceError("; ".join(problems))
        return {**self._fine_grained, **self._classic}

    # --- fine-grained tokens ------------------------------------------------------------------

    def _read_fine_grained(self, org: str) -> dict[str, WatchedToken]:
        api = self._org_client()
        found: dict[str, WatchedToken] = {}
        path = f"orgs/{quote(org, safe='')}/personal-access-tokens"
        for page in api.pages(path, params={"per_page": PER_PAGE}):
            if not isinstance(page, list):
                raise SourceError(f"{api.base}{path}: the answer is not a list of tokens")
            for grant in page:
                token = self._fine_grained_token(grant, org)
                found[token.token_id] = token  # a grant shifted onto the next page: once
        return found

    def _fine_grained_token(self, grant: object, org: str) -> WatchedToken:
        where = f"{self._config.url}/orgs/{org}/personal-access-tokens"
        if not isinstance(grant, dict) or not isinstance(grant.get("id"), int):
            raise SourceError(f"{where}: an entry is not a token grant (no id)")
        grant_id = grant["id"]
        token_id = grant.get("token_id")
        owner = grant.get("owner")
        login = owner.get("login") if isinstance(owner, dict) else None
        last_used = parse_time(
            grant.get("token_last_used_at"), where=where, field="token_last_used_at"
        )
        labels = {
            "type": "fine-grained",
            "owner": str(login or ""),
            "repository_selection": str(grant.get("repository_selection") or ""),
            "last_used_at": last_used.strftime("%Y-%m-%dT%H:%M:%SZ") if last_used else "never",
            "expired": "true" if grant.get("token_expired") else "false",
            "permissions": _permissions(grant.get("permissions")),
            "grant_id": str(grant_id),
            "url": f"{self._web}/organizations/{org}/settings/personal-access-tokens/active",
        }
        return WatchedToken(
            source=self.name,
            # The token's own id when the server sends it: it is what the audit log and the
            # settings page show, and one token has one grant per organisation.
            token_id=str(token_id) if isinstance(token_id, int) else f"grant:{grant_id}",
            name=str(grant.get("token_name") or f"grant {grant_id}"),
            expires_at=parse_time(
                grant.get("token_expires_at"), where=where, field="token_expires_at"
            ),
            owner=None if login is None else str(login),
            labels=labels,
        )

    def _org_client(self) -> ApiClient:
        """The client that lists the organisation's tokens, with a token that is still good."""
        token = self._config.token or self._installation_token()
        if self._org_api is None or token != self._org_token:
            if self._org_api is not None:
                self._org_api.close()
            self._org_api = self._client(token)
            self._org_token = token
        return self._org_api

    def _installation_token(self) -> str:
        """The App's installation token: the one minted last, or a new one near its expiry."""
        now = self._clock.now()
        current = self._installation
        if current is not None and now < current.expires_at - REMINT_BEFORE:
            return current.token
        app = self._config.app
        if app is None:  # pragma: no cover - check_options gives token or app
            raise SourceError(f"{self._config.url}: no token to read with")
        api = self._client(self._jwt(app, now))
        where = f"{api.base}app/installations/{app.installation_id}/access_tokens"
        try:
            response = api.request(
                "POST",
                f"app/installations/{app.installation_id}/access_tokens",
                json={"permissions": TOKEN_PERMISSIONS},
            )
            if response.status_code == _UNAUTHORIZED:
                raise SourceError(
                    f"{where}: 401 the App's JWT was refused (check app_id, private_key and "
                    f"this host's clock): {_error_text(response)}"
                )
            document = api.document(api.check(response))
        finally:
            api.close()
        token = document.get("token") if isinstance(document, dict) else None
        expires = document.get("expires_at") if isinstance(document, dict) else None
        expires_at = parse_time(expires, where=where, field="expires_at")
        if not isinstance(token, str) or not token or expires_at is None:
            raise SourceError(f"{where}: the answer has no token and expires_at")
        self._installation = _Installation(token, expires_at)
        return token

    def _jwt(self, app: GitHubApp, now: datetime) -> str:
        """A JWT for *app* (RS256; iat a minute back, exp nine minutes on; iss the App)."""
        # cryptography only for a pass that mints a token: the settings import this (#13).
        from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import padding, rsa  # noqa: PLC0415

        if self._signing_key is None:
            try:
                key = serialization.load_pem_private_key(
                    app.private_key.encode("ascii"), password=None
                )
            except (ValueError, TypeError, UnicodeEncodeError):
                raise SourceError("private_key: not a readable PEM private key") from None
            if not isinstance(key, rsa.RSAPrivateKey):
                raise SourceError("private_key: not an RSA key (GitHub Apps sign with RS256)")
            self._signing_key = key
        issued = int((now - JWT_BACKDATE).timestamp())
        claims = {
            "iat": issued,
            "exp": int((now + JWT_LIFETIME).timestamp()),
            "iss": int(app.app_id) if app.app_id.isdigit() else app.app_id,
        }
        signing_input = (
            f"{_b64url(json.dumps({'alg': 'RS256', 'typ': 'JWT'}).encode())}."
            f"{_b64url(json.dumps(claims, separators=(',', ':')).encode())}"
        )
        signature = self._signing_key.sign(
            signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
        )
        return f"{signing_input}.{_b64url(signature)}"

    # --- classic tokens -----------------------------------------------------------------------

    def _read_classic(self, classic: ClassicToken) -> WatchedToken:
        api = self._classic_api.get(classic.name)
        if api is None:
            api = self._classic_api[classic.name] = self._client(classic.token)
        response = api.check(api.request("GET", "user"))
        document = api.document(response)
        login = document.get("login") if isinstance(document, dict) else None
        if not isinstance(login, str) or not login:
            raise SourceError(f"{api.base}user: the answer has no login")
        header = response.headers.get("GitHub-Authentication-Token-Expiration")
        labels = {
            "type": "classic",
            "owner": login,
            "url": f"{self._web}/settings/tokens",
        }
        scopes = response.headers.get("X-OAuth-Scopes")
        if scopes is not None:
            labels["scopes"] = ",".join(part.strip() for part in scopes.split(",") if part.strip())
        return WatchedToken(
            source=self.name,
            token_id=f"classic:{classic.name}",
            name=f"{classic.name} ({login})",
            expires_at=None if header is None else token_expiration(header),
            owner=login,
            labels=labels,
        )

    # --- requests -----------------------------------------------------------------------------

    def _client(self, token: str) -> ApiClient:
        return ApiClient(
            base=self._config.url,
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "Authorization": f"Bearer {token}",
                "User-Agent": "notifier",  # GitHub refuses requests without one
            },
            timeout=self._config.timeout,
            ca_file=self._config.ca_file,
            error_text=_error_text,
            retryable=rate_limited,
            sleep=self._sleep,
        )


def rate_limited(response: httpx.Response) -> bool:
    """Whether a 403 is GitHub's rate limit (primary: none left; secondary: Retry-After)."""
    return response.status_code == _FORBIDDEN and (
        response.headers.get("x-ratelimit-remaining") == "0" or "retry-after" in response.headers
    )


def token_expiration(header: str) -> datetime:
    """The ``GitHub-Authentication-Token-Expiration`` header's time, in UTC.

    ``2023-01-01 00:00:00 UTC``, or with an offset instead of ``UTC`` (``+0900``).
    """
    match = _EXPIRATION.fullmatch(header.strip())
    if match is None:
        raise SourceError(f"GitHub-Authentication-Token-Expiration: {header!r} is not a time")
    stamp, zone = match.groups()
    moment = datetime.strptime(
        f"{stamp} {'+0000' if zone == 'UTC' else zone}", "%Y-%m-%d %H:%M:%S %z"
    )
    return moment.astimezone(UTC)


def web_root(api_url: str) -> str:
    """The web address beside an API root: github.com for api.github.com, HOST for HOST/api/v3."""
    parts = urlsplit(api_url)
    host = parts.netloc
    if parts.path.rstrip("/").endswith("/api/v3"):
        return f"{parts.scheme}://{host}"
    if host.startswith("api."):  # api.github.com, api.<subdomain>.ghe.com
        host = host.removeprefix("api.")
    return f"{parts.scheme}://{host}"


def _permissions(value: object) -> str:
    """``organization:members=read;repository:metadata=read``: a grant's permissions, sorted."""
    if not isinstance(value, dict):
        return ""
    granted = [
        f"{group}:{permission}={level}"
        for group, levels in sorted(value.items())
        if isinstance(levels, dict)
        for permission, level in sorted(levels.items())
    ]
    return ";".join(granted)


def _error_text(response: httpx.Response) -> str:
    """GitHub's ``message``, and when a rate limit ran out, when it resets."""
    try:
        document = response.json()
    except ValueError:
        document = None
    message = document.get("message") if isinstance(document, dict) else None
    text = " ".join(str(message).split())[:300] if message else response.reason_phrase
    if response.headers.get("x-ratelimit-remaining") == "0":
        reset = response.headers.get("x-ratelimit-reset", "")
        if reset.isdigit():
            at = datetime.fromtimestamp(int(reset), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            text = f"{text} (rate limit used up until {at})"
    return text


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
