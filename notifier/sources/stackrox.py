"""The ``stackrox`` source: the API tokens of a StackRox / Red Hat ACS Central.

Every pass asks Central for its tokens that are not revoked, as its own UI does
(``GET /v1/apitokens?revoked=false``, answered in one document, not paged) and watches each
one: the id is the token's id (never the token), the name its name, ``issuedAt`` its creation
and ``expiration`` its expiry (null: never). A token the answer marks ``revoked`` anyway is
left out, so a loop about a token revoked since closes silently, as does one about a token
gone. The labels carry the token's ``roles`` (the older single ``role`` where ``roles`` is
empty) and ``url``, the token's page in Central's portal.

The token the source reads with needs ``read`` access to the ``Integration`` resource (the
``GetAPITokens`` method's permission). The request has the configured timeout, and a 429 or
503 answer's ``Retry-After`` is waited out, bounded by it (see sources/api.py).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from notifier.config.options import KindOptions, OptionError, option_duration
from notifier.core.model import WatchedToken
from notifier.sources import ReadsWhole, SourceError
from notifier.sources.api import ApiClient, check_ca_file, check_token, check_url, parse_time

OPTIONS = KindOptions(("url", "token", "ca_file", "timeout"), secrets=frozenset({"token"}))
# Where Central's portal shows one API token (ui/apps/platform/src/routePaths.ts:
# integrationDetailsPath, with source authProviders and type apitoken).
PORTAL_PAGE = "/main/integrations/authProviders/apitoken/view/"


@dataclass(frozen=True, slots=True)
class StackRoxSourceConfig:
    """A Central, and the API token to read its API tokens with."""

    name: str
    url: str  # Central's address; the API is url + /v1
    token: str = field(repr=False)
    ca_file: Path | None
    timeout: timedelta


def check_options(name: str, options: Mapping[str, Any]) -> StackRoxSourceConfig:
    """Check the options of the stackrox source *name*."""
    url = check_url("url", options.get("url"), "https://central.example.com")
    if urlsplit(url).path.rstrip("/").endswith("/v1"):
        raise OptionError("url", "is Central's address, without /v1 (the source adds it)")
    return StackRoxSourceConfig(
        name=name,
        url=url,
        token=check_token(
            "token", options.get("token"), "a Central API token with read access to Integration"
        ),
        ca_file=_ca_bundle(check_ca_file("ca_file", options.get("ca_file"))),
        timeout=option_duration("timeout", options.get("timeout"), "10s"),
    )


def _ca_bundle(path: Path | None) -> Path | None:
    """*path* if it holds a CA certificate: a wrong file fails at start-up, not every pass."""
    if path is not None:
        try:
            ssl.create_default_context(cafile=str(path))
        except (ssl.SSLError, OSError) as error:
            raise OptionError(
                "ca_file", f"{str(path)!r} is not a PEM CA bundle ({error})"
            ) from None
    return path


class StackRoxSource(ReadsWhole):
    """The API tokens of a StackRox / Red Hat ACS Central."""

    def __init__(
        self,
        config: StackRoxSourceConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = config.name
        self._config = config
        self._api = ApiClient(
            base=f"{config.url}/v1",
            headers={"Authorization": f"Bearer {config.token}", "Accept": "application/json"},
            timeout=config.timeout,
            ca_file=config.ca_file,
            sleep=sleep,
        )

    def snapshot(self, now: datetime) -> dict[str, WatchedToken]:
        """Central's every token not revoked, by id."""
        del now  # read as it stands
        return self.read()

    def close(self) -> None:
        """Close the connection pool."""
        self._api.close()

    def read(self) -> dict[str, WatchedToken]:
        """Every token Central holds that is not revoked, by id."""
        where = self._api.shown(self._api.url("apitokens"))
        document = self._api.get_json("apitokens", params={"revoked": "false"})
        # Central always writes the list (EmitUnpopulated), empty or not: an answer without
        # it is not Central's, and reading it as "no tokens" would close every loop.
        tokens = document.get("tokens") if isinstance(document, dict) else None
        if not isinstance(tokens, list):
            raise SourceError(f"{where}: the answer has no tokens list (is url Central's?)")
        found: dict[str, WatchedToken] = {}
        for entry in tokens:
            if not isinstance(entry, dict):
                raise SourceError(f"{where}: a token is not an object")
            if entry.get("revoked") is True:
                continue
            token = self._token(entry, where)
            found[token.token_id] = token
        return found

    def _token(self, entry: Mapping[str, Any], where: str) -> WatchedToken:
        token_id = entry.get("id")
        if not isinstance(token_id, str) or not token_id:
            raise SourceError(f"{where}: a token without an id")
        roles = entry.get("roles") or []
        if not isinstance(roles, list):
            roles = []
        if not roles and entry.get("role"):  # Centrals before roles had one role
            roles = [entry["role"]]
        name = entry.get("name")
        return WatchedToken(
            source=self.name,
            token_id=token_id,
            name=name if isinstance(name, str) and name else token_id,
            expires_at=parse_time(
                entry.get("expiration"), where=where, field=f"{token_id} expiration"
            ),
            created_at=parse_time(entry.get("issuedAt"), where=where, field=f"{token_id} issuedAt"),
            labels={
                "roles": ",".join(str(role) for role in roles),
                "url": f"{self._config.url}{PORTAL_PAGE}{quote(token_id, safe='')}",
            },
        )
