"""The ``gitlab`` source: the personal, project and group access tokens of a GitLab instance.

Every pass first asks who the token is (``GET /user``): a refused token (401) fails the
whole source. With ``personal`` on (the default) it lists the personal access tokens
(``GET /personal_access_tokens?state=active&revoked=false``): every user's for an
administrator's token, the token owner's own for anyone else's. For each configured project
and group it reads the place (``GET /projects/:id``, ``GET /groups/:id``) and its access
tokens (``GET /projects/:id/access_tokens?state=active``, ``/groups/:id/access_tokens``).

**Ids.** Project and group access tokens are personal access tokens of the place's bot
user, so every kind shares one id space, and an administrator's personal list holds the
bot tokens too: the id is GitLab's token id, and a token a configured project or group
lists is reported as that place's (type, path, role) rather than as a bot's personal token.

**Expiry.** ``expires_at`` is a date; GitLab's documentation says a token expires "on the
date you define, at midnight, 00:00 AM UTC", and its ``expired?`` check is
``expires_at <= Time.current``. So the expiry is 00:00Z of that date; no date: never
expires. A token stays listed through the day it expired (GitLab's ``state=active`` does
the same: ``expires_at >= CURRENT_DATE``), so its expired notice goes out; ``active`` is
false from 00:00Z and is therefore not what decides. Revoked tokens are left out.

**Owners** are the token user's email (``email`` for an administrator, else
``public_email``) or username, from ``GET /users/:id``, looked up :data:`PARALLEL_LOOKUPS`
at a time, once per user per pass, for the users whose tokens were listed; a bot user's
(project or group token) is its username, as its address takes no mail.

**Pages** are 100 rows each, followed by ``X-Next-Page`` (empty on the last page), or by
the ``Link`` header's ``rel="next"`` where no such header is sent (keyset pagination).

**Failures.** A project or group that cannot be read (404: gone or invisible to the
token; 401: the token may not read its access tokens; a timeout) is that place's failure:
the pass reports the source failed (``source.failed ... partial=true``, exit 75 for
``check``), the other places are read, and what the failed place listed last stays
watched. The instance itself failing (``/user``, the personal list, an owner lookup) fails
the whole source for the pass.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from notifier.config.options import KindOptions, OptionError, option_duration, option_list
from notifier.core.model import WatchedToken
from notifier.sources import ReadsWhole, SourceError
from notifier.sources.api import (
    MAX_PAGES,
    ApiClient,
    check_ca_file,
    check_token,
    check_url,
    link_next,
    parse_time,
)

if TYPE_CHECKING:
    import httpx

OPTIONS = KindOptions(
    ("url", "token", "projects", "groups", "personal", "ca_file", "timeout"),
    secrets=frozenset({"token"}),
)
PARALLEL_LOOKUPS = 8  # places and owner lookups in flight at once over the client's pool
PER_PAGE = 100  # GitLab's largest page
_NOT_FOUND = 404
_UNAUTHORIZED = 401
_PLACE = re.compile(r"[0-9]+|[A-Za-z0-9_.][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_.][A-Za-z0-9_.-]*)*")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
# GitLab's roles by access level (the access tokens API's access_level).
_ROLES = {
    5: "minimal_access",
    10: "guest",
    15: "planner",
    20: "reporter",
    25: "security_manager",
    30: "developer",
    40: "maintainer",
    50: "owner",
}


@dataclass(frozen=True, slots=True)
class GitLabSourceConfig:
    """A GitLab instance, the token to read it with, and the projects and groups to watch."""

    name: str
    url: str  # the instance, e.g. https://gitlab.example.com; the API is url + /api/v4
    token: str = field(repr=False)
    projects: tuple[str, ...]  # URL-encoded ids or full paths, as sent: "42", "platform%2Fapi"
    groups: tuple[str, ...]
    personal: bool  # the personal access tokens list (every user's for an administrator)
    ca_file: Path | None
    timeout: timedelta


def check_options(name: str, options: Mapping[str, Any]) -> GitLabSourceConfig:
    """Check the options of the gitlab source *name*."""
    url = check_url("url", options.get("url"), "https://gitlab.example.com")
    if url.rstrip("/").endswith("/api/v4"):
        raise OptionError("url", "give the instance's URL, without /api/v4")
    token = check_token(
        "token",
        options.get("token"),
        "a token with the read_api scope (an administrator's to watch every user's tokens)",
    )
    projects = _places("projects", options.get("projects"), "platform/api")
    groups = _places("groups", options.get("groups"), "platform")
    personal = _option_bool("personal", options.get("personal"), default=True)
    if not personal and not projects and not groups:
        raise OptionError("projects", "nothing to watch: set projects or groups, or personal")
    return GitLabSourceConfig(
        name=name,
        url=url,
        token=token,
        projects=projects,
        groups=groups,
        personal=personal,
        ca_file=check_ca_file("ca_file", options.get("ca_file")),
        timeout=option_duration("timeout", options.get("timeout"), "10s"),
    )


def _places(option: str, value: object, example: str) -> tuple[str, ...]:
    """Ids or full paths, plain (``platform/api``) or URL-encoded; each URL-encoded once."""
    places: list[str] = []
    for entry in option_list(option, value):
        plain = unquote(entry).strip("/")
        if not _PLACE.fullmatch(plain):
            raise OptionError(option, f"{entry!r} is not an id or a full path such as {example}")
        encoded = quote(plain, safe="")
        if encoded not in places:
            places.append(encoded)
    return tuple(places)


def _option_bool(option: str, value: object, *, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise OptionError(option, "expected true or false")


def next_page(response: httpx.Response) -> str | None:
    """The next page of a GitLab list: ``X-Next-Page`` (offset), else ``Link`` (keyset).

    ``X-Next-Page`` is empty on the last page; the next URL is this one with that page, so
    it stays on the address the source was given even where GitLab's links name another.
    """
    header = response.headers.get("X-Next-Page")
    if header is None:
        return link_next(response)
    page = header.strip()
    if not page:
        return None
    if not page.isdigit():
        raise SourceError(f"{response.request.url.path}: X-Next-Page {page!r} is not a page")
    return str(response.request.url.copy_set_param("page", page))


@dataclass(frozen=True, slots=True)
class _Listed:
    """A token as a list gave it, before its owner is known."""

    token_id: str
    user_id: int | None
    name: str
    expires_at: datetime | None
    created_at: datetime | None
    labels: dict[str, str]


@dataclass(frozen=True, slots=True)
class _User:
    username: str | None
    owner: str | None


class _PlaceError(Exception):
    """A configured project or group could not be read; the other places are."""


class GitLabSource(ReadsWhole):
    """Personal, project and group access tokens of a GitLab instance."""

    def __init__(
        self,
        config: GitLabSourceConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = config.name
        self._config = config
        self._api = ApiClient(
            base=f"{config.url}/api/v4",
            headers={"PRIVATE-TOKEN": config.token},
            timeout=config.timeout,
            ca_file=config.ca_file,
            sleep=sleep,
        )
        # place -> what it listed when last read: a failed place keeps it watched.
        self._places: dict[str, dict[str, WatchedToken]] = {}
        self._problems: tuple[str, ...] = ()

    def snapshot(self, now: datetime) -> dict[str, WatchedToken]:
        """Every token of the instance and the places, by id."""
        return self.read(now)

    def problems(self) -> tuple[str, ...]:
        """The projects and groups the last window could not read (the others were read)."""
        return self._problems

    def close(self) -> None:
        """Close the connection pool."""
        self._api.close()

    def read(self, now: datetime) -> dict[str, WatchedToken]:
        """Every token listed at *now*, by id; raise :class:`SourceError` if GitLab fails."""
        me = self._api.get_json("user")  # a refused token fails here, for the whole source
        if not isinstance(me, dict) or not isinstance(me.get("id"), int):
            raise SourceError(f"{self._api.url('user')}: the answer is not a user")
        today = now.astimezone(UTC).date()
        readers: list[tuple[str, Callable[[], list[_Listed]]]] = []
        if self._config.personal:
            readers.append(("personal", partial(self._personal, today)))
        for kind, refs in (("project", self._config.projects), ("group", self._config.groups)):
            readers.extend(
                (f"{kind} {unquote(ref)}", partial(self._place, kind, ref, today)) for ref in refs
            )
        listed, problems = self._read_places(readers)
        users = self._users({t.user_id for tokens in listed.values() for t in tokens.values()}, me)
        for place, tokens in listed.items():
            self._places[place] = {
                token_id: self._watched(token, users, me) for token_id, token in tokens.items()
            }
        self._problems = tuple(problems.values())
        found: dict[str, WatchedToken] = {}
        # Personal first: a project's bot token is in an administrator's list too, and is
        # reported as the project's (its type, path and role).
        for place, _ in readers:
            found.update(self._places.get(place, {}))
        return dict(sorted(found.items(), key=lambda item: int(item[0])))

    def _read_places(
        self, readers: list[tuple[str, Callable[[], list[_Listed]]]]
    ) -> tuple[dict[str, dict[str, _Listed]], dict[str, str]]:
        """What each place lists, side by side; a failed project or group is its problem.

        The personal list is the instance's own: its failure fails the read.
        """

        def read_one(reader: Callable[[], list[_Listed]]) -> tuple[list[_Listed] | None, str]:
            try:
                return reader(), ""
            except _PlaceError as failure:
                return None, str(failure)

        listed: dict[str, dict[str, _Listed]] = {}
        problems: dict[str, str] = {}
        if not readers:
            return listed, problems
        pool = ThreadPoolExecutor(max_workers=min(PARALLEL_LOOKUPS, len(readers)))
        try:
            results = pool.map(lambda entry: read_one(entry[1]), readers)
            for (place, _), (tokens, problem) in zip(readers, results, strict=True):
                if tokens is None:
                    problems[place] = problem
                else:
                    listed[place] = {token.token_id: token for token in tokens}
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return listed, problems

    # --- the lists ----------------------------------------------------------------------------

    def _personal(self, today: date) -> list[_Listed]:
        """The personal access tokens the token may see (every user's for an administrator)."""
        params = {"state": "active", "revoked": "false", "per_page": PER_PAGE}
        listed: list[_Listed] = []
        for page in self._api.pages("personal_access_tokens", params=params, next_page=next_page):
            for entry in self._rows(page, "personal_access_tokens"):
                token = self._listed(entry, today, {"type": "personal"})
                if token is not None:
                    listed.append(token)
        return listed

    def _place(self, kind: str, ref: str, today: date) -> list[_Listed]:
        """A project's or group's access tokens; :class:`_PlaceError` when it cannot be read."""
        where = f"{kind}s/{ref}"
        # A group's answer would list its projects unless told not to.
        query = {"with_projects": "false"} if kind == "group" else None
        try:
            about = self._api.document(self._place_response(where, query, kind))
        except SourceError as error:
            raise _PlaceError(str(error)) from None
        if not isinstance(about, dict):
            raise _PlaceError(f"{self._api.url(where)}: the answer is not a {kind}")
        path = about.get("path_with_namespace" if kind == "project" else "full_path")
        path = path if isinstance(path, str) and path else unquote(ref)
        settings = f"{path}/-/settings/access_tokens"
        if kind == "group":
            settings = f"groups/{settings}"
        labels = {"type": kind, kind: path, "url": f"{self._config.url}/{settings}"}
        listed: list[_Listed] = []
        url: str | None = f"{where}/access_tokens"
        params: Mapping[str, Any] | None = {"state": "active", "per_page": PER_PAGE}
        for _ in range(MAX_PAGES):
            if url is None:
                return listed
            response = self._place_response(url, params, kind)
            try:
                rows = self._rows(self._api.document(response), f"{where}/access_tokens")
                listed.extend(
                    token
                    for token in (self._listed(entry, today, labels) for entry in rows)
                    if token is not None
                )
                url, params = next_page(response), None
            except SourceError as error:
                raise _PlaceError(str(error)) from None
        raise _PlaceError(f"{self._api.url(where)}: more than {MAX_PAGES} pages; stopped")

    def _place_response(
        self, path: str, params: Mapping[str, Any] | None, kind: str
    ) -> httpx.Response:
        """A successful answer from a place; every failure is the place's (:class:`_PlaceError`).

        GitLab answers 404 for a place that is gone or that the token may not see, and 401
        for one whose access tokens it may not read: the token itself was accepted by
        ``/user`` this pass.
        """
        try:
            response = self._api.request("GET", path, params=params)
            if response.status_code == _UNAUTHORIZED:
                role = "Maintainer" if kind == "project" else "Owner"
                raise _PlaceError(
                    f"{self._api.shown(str(response.request.url))}: 401 the token may not read "
                    f"this {kind}'s access tokens (it needs the {role} role)"
                )
            return self._api.check(response)
        except SourceError as error:
            raise _PlaceError(str(error)) from None

    def _rows(self, page: object, path: str) -> list[dict[str, Any]]:
        if not isinstance(page, list) or not all(isinstance(row, dict) for row in page):
            raise SourceError(f"{self._api.url(path)}: the answer is not a list of tokens")
        return page

    def _listed(
        self, entry: Mapping[str, Any], today: date, labels: Mapping[str, str]
    ) -> _Listed | None:
        """A listed token, or None when revoked or expired before *today* (UTC)."""
        token_id = entry.get("id")
        if not isinstance(token_id, int) or isinstance(token_id, bool):
            raise SourceError(f"{self._config.url}: a token without an id: {sorted(entry)}")
        where = f"{self._config.url}: token {token_id}"
        expires_at = _expiry(entry.get("expires_at"), where)
        if entry.get("revoked") is True or (expires_at is not None and expires_at.date() < today):
            return None
        scopes = entry.get("scopes") or []
        shown = dict(labels)
        shown["scopes"] = (
            ",".join(str(scope) for scope in scopes) if isinstance(scopes, list) else ""
        )
        level = entry.get("access_level")
        if isinstance(level, int) and not isinstance(level, bool):
            shown["access_level"] = str(level)
            if level in _ROLES:
                shown["role"] = _ROLES[level]
        last_used = parse_time(entry.get("last_used_at"), where=where, field="last_used_at")
        if last_used is not None:
            shown["last_used_at"] = last_used.isoformat(timespec="seconds").replace("+00:00", "Z")
        user_id = entry.get("user_id")
        return _Listed(
            token_id=str(token_id),
            user_id=user_id if isinstance(user_id, int) and not isinstance(user_id, bool) else None,
            name=str(entry.get("name") or token_id),
            expires_at=expires_at,
            created_at=parse_time(entry.get("created_at"), where=where, field="created_at"),
            labels=shown,
        )

    # --- owners -------------------------------------------------------------------------------

    def _users(self, user_ids: set[int | None], me: Mapping[str, Any]) -> dict[int, _User]:
        """Each user of *user_ids*, :data:`PARALLEL_LOOKUPS` at a time; the token's own: *me*."""
        users = {int(me["id"]): _user(me)}
        wanted = sorted(
            user_id for user_id in user_ids if user_id is not None and user_id not in users
        )
        if not wanted:
            return users
        pool = ThreadPoolExecutor(max_workers=min(PARALLEL_LOOKUPS, len(wanted)))
        try:
            users.update(zip(wanted, pool.map(self._user, wanted), strict=True))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return users

    def _user(self, user_id: int) -> _User:
        """A user by id; one that is gone (404) has no owner."""
        response = self._api.request("GET", f"users/{user_id}")
        if response.status_code == _NOT_FOUND:
            return _User(None, None)
        document = self._api.document(self._api.check(response))
        if not isinstance(document, dict):
            raise SourceError(f"{self._api.url(f'users/{user_id}')}: the answer is not a user")
        return _user(document)

    def _watched(
        self, token: _Listed, users: Mapping[int, _User], me: Mapping[str, Any]
    ) -> WatchedToken:
        user = users.get(token.user_id) if token.user_id is not None else None
        username = user.username if user is not None else None
        labels = dict(token.labels)
        if username:
            labels["user"] = username
        if labels["type"] == "personal":
            labels["url"] = self._personal_page(token.user_id == me["id"], username)
        return WatchedToken(
            source=self.name,
            token_id=token.token_id,
            name=token.name,
            expires_at=token.expires_at,
            owner=user.owner if user is not None else None,
            created_at=token.created_at,
            labels=dict(sorted(labels.items())),
        )

    def _personal_page(self, own: bool, username: str | None) -> str:
        """Where a personal token is seen: one's own settings, or the user's admin page."""
        if own:
            return f"{self._config.url}/-/user_settings/personal_access_tokens"
        if username:
            return f"{self._config.url}/admin/users/{quote(username, safe='')}"
        return f"{self._config.url}/admin/users"


def _user(document: Mapping[str, Any]) -> _User:
    """A user's name, and whom to tell: the email, the public email, else the username.

    A bot user (a project's or group's token) has a no-reply address: its username it is.
    """
    username = document.get("username")
    username = username if isinstance(username, str) and username else None
    if document.get("bot") is not True:
        for key in ("email", "public_email"):
            address = document.get(key)
            if isinstance(address, str) and address.strip():
                return _User(username, address.strip())
    return _User(username, username)


def _expiry(value: object, where: str) -> datetime | None:
    """An ``expires_at`` date: the token stops working at 00:00 UTC that day."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            day = date.fromisoformat(value.strip())
        except ValueError:
            pass
        else:
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
    return parse_time(value, where=where, field="expires_at")
