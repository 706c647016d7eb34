"""The ``x509`` source: certificates in files and presented by TLS endpoints, re-read every pass.

Each *place* (a file, or an endpoint) presents certificates; each one that is not a trust
anchor is a credential, keyed by its SHA-256 fingerprint (sources/certificates.py reads them).

**Renewal.** The same place presenting a new certificate is a renewal: when a watched
certificate's place now presents another with the same name and a later expiry, the old one
is reported *superseded*, which closes its loop with one renewed notice. A place that no
longer presents a certificate, with no such successor, lets it go silently (resolved).

**Alternating certificates.** A load balancer or CDN may present different certificates on
different connections. A certificate an endpoint presented is remembered for ``remember``
(1 day by default) after it was last seen, and stays watched meanwhile, so its history (the
backoff, the notices already sent) goes on as if it had been seen on every pass: alternation
never resets it into a flood. A file presents exactly what it holds, so it has no memory.

**Side by side.** Up to :data:`PARALLEL_READS` places are read at once, each bounded by the
timeout, so a pass over many endpoints takes about the slowest of each group.

**Failures.** A place that cannot be read (a missing file, a refused connection) is that
place's failure: the pass reports the source failed (``source.failed``, exit 75 for
``check``), the other places are read as usual, and what the failed place presented last
stays watched, so an outage neither hides nor closes anything. Memory is the process's own:
after a restart a renewal seen first is let go silently rather than announced.
"""

from __future__ import annotations

import glob
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from notifier.config.options import KindOptions, OptionError, option_duration, option_list
from notifier.core.model import WatchedToken
from notifier.core.policy import in_window
from notifier.sources.endpoints import STARTTLS_PROTOCOLS, Endpoint

OPTIONS = KindOptions(
    ("paths", "endpoints", "pkcs12_password", "timeout", "remember"),
    secrets=frozenset({"pkcs12_password"}),
)
_PORT_END = 65536  # one past the largest TCP port
_GLOB = frozenset("*?[")
# A certificate a place stopped presenting is kept this long to recognise its renewal.
_RETIRED_FOR = timedelta(days=30)
PARALLEL_READS = 16  # places read at once: a pass over 100 dead endpoints takes 7 timeouts


@dataclass(frozen=True, slots=True)
class X509SourceConfig:
    """Certificate files and TLS endpoints to watch."""

    name: str
    paths: tuple[str, ...]  # files, directories, globs
    endpoints: tuple[Endpoint, ...]
    pkcs12_password: bytes | None
    timeout: timedelta
    remember: timedelta  # how long an endpoint's certificate stays watched after last seen


def check_options(name: str, options: Mapping[str, Any]) -> X509SourceConfig:
    """Check the options of the x509 source *name*."""
    paths = option_list("paths", options.get("paths"))
    endpoints = tuple(_endpoint(entry) for entry in _endpoint_entries(options.get("endpoints")))
    if not paths and not endpoints:
        raise OptionError("paths", "set paths or endpoints (or both): what to watch")
    password = options.get("pkcs12_password")
    if password is not None and not isinstance(password, str):
        raise OptionError("pkcs12_password", "expected text")
    return X509SourceConfig(
        name=name,
        paths=paths,
        endpoints=endpoints,
        pkcs12_password=None if password is None else password.encode("utf-8"),
        timeout=option_duration("timeout", options.get("timeout"), "10s"),
        remember=option_duration("remember", options.get("remember"), "1d"),
    )


def _endpoint_entries(value: object) -> list[object]:
    if value is None:
        return []
    if isinstance(value, list):
        return list(value)  # TOML: strings or tables
    return list(option_list("endpoints", value))


def _endpoint(entry: object) -> Endpoint:
    """``host:port[;sni=name][;starttls=smtp]``, or a TOML table of address, sni, starttls."""
    if isinstance(entry, str):
        address, *qualifiers = (part.strip() for part in entry.split(";"))
        fields: dict[str, object] = {"address": address}
        for qualifier in qualifiers:
            key, separator, value = qualifier.partition("=")
            if not separator or key.strip() not in {"sni", "starttls"}:
                raise OptionError("endpoints", f"{qualifier!r}: expected sni=name or starttls=smtp")
            fields[key.strip()] = value.strip()
    elif isinstance(entry, Mapping):
        fields = dict(entry)
        unknown = sorted(set(fields) - {"address", "sni", "starttls"})
        if unknown:
            raise OptionError("endpoints", f"unknown key {unknown[0]!r} (address, sni, starttls)")
    else:
        raise OptionError("endpoints", "expected host:port entries")
    host, port = _address(fields.get("address"))
    sni = fields.get("sni")
    starttls = fields.get("starttls")
    if sni is not None and (not isinstance(sni, str) or not sni):
        raise OptionError("endpoints", f"{host}:{port}: sni must be a host name")
    if starttls is not None and starttls not in STARTTLS_PROTOCOLS:
        raise OptionError(
            "endpoints",
            f"{host}:{port}: starttls {starttls!r} (known: {', '.join(STARTTLS_PROTOCOLS)})",
        )
    return Endpoint(host, port, sni if isinstance(sni, str) else None, starttls)


def _address(value: object) -> tuple[str, int]:
    if not isinstance(value, str) or not value:
        raise OptionError("endpoints", "an entry has no host:port")
    host, separator, port_text = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not separator or not host or not port_text.isdigit() or not 0 < int(port_text) < _PORT_END:
        raise OptionError("endpoints", f"{value!r} is not host:port (IPv6 as [::1]:443)")
    return host, int(port_text)


@dataclass(slots=True)
class _Retired:
    token: WatchedToken
    places: frozenset[str]
    since: datetime


class X509Source:
    """Certificates from files and TLS endpoints."""

    def __init__(self, config: X509SourceConfig) -> None:
        self.name = config.name
        self._config = config
        # place -> fingerprint -> (credential, when last seen there)
        self._places: dict[str, dict[str, tuple[WatchedToken, datetime]]] = {}
        self._retired: dict[str, _Retired] = {}
        self._last: dict[str, WatchedToken] | None = None
        self._problems: tuple[str, ...] = ()
        self._endpoint_places = frozenset(endpoint.place for endpoint in config.endpoints)

    def window(self, now: datetime, horizon: timedelta, lookback: timedelta) -> list[WatchedToken]:
        """Read every place; the certificates expiring in the window."""
        self._last = self.read(now)
        return [t for t in self._last.values() if in_window(t, now, horizon, lookback)]

    def by_ids(self, token_ids: Sequence[str]) -> dict[str, WatchedToken]:
        """The certificates of *token_ids* as the last window read them; renewed: superseded."""
        current = self._last if self._last is not None else {}
        found: dict[str, WatchedToken] = {}
        for token_id in token_ids:
            if token_id in current:
                found[token_id] = current[token_id]
            elif (retired := self._retired.get(token_id)) is not None and self._renewed(retired):
                found[token_id] = replace(retired.token, superseded=True)
        return found

    def problems(self) -> tuple[str, ...]:
        """The places the last window could not read (the others were read)."""
        return self._problems

    def found(self) -> list[WatchedToken]:
        """Every certificate the last window watched, in the window or not."""
        return list((self._last or {}).values())

    def close(self) -> None:
        """Nothing to release: every read opens and closes its own file or connection."""

    def read(self, now: datetime) -> dict[str, WatchedToken]:
        """Read every place at *now*; every certificate watched, by fingerprint."""
        # cryptography and the handshakes only for a pass that reads certificates (issue #13).
        from notifier.sources.certificates import (  # noqa: PLC0415
            CertificateReadError,
            credential,
            watched,
        )

        problems: list[str] = []

        def read_place(place: str, reader: Any) -> tuple[list[WatchedToken] | None, str | None]:
            """What *place* presents (None: it failed), and its problem."""
            if reader is None:  # a named file that is gone: its problem is said already
                return None, None
            try:
                return [
                    credential(certificate, self.name, place) for certificate in watched(reader())
                ], None
            except CertificateReadError as error:
                return None, str(error)
            except ValueError as error:  # a certificate cryptography reads but cannot describe
                return None, f"{place}: {error}"

        readers = self._readers(problems)
        presented: dict[str, list[WatchedToken] | None] = {}  # None: the place failed
        # Places are read side by side, so that a pass over many endpoints takes about the
        # slowest one's time (each bounded by the timeout), not the sum of them.
        with ThreadPoolExecutor(max_workers=max(1, min(PARALLEL_READS, len(readers)))) as pool:
            results = pool.map(lambda entry: read_place(*entry), readers)
            for (place, _), (tokens, problem) in zip(readers, results, strict=True):
                presented[place] = tokens
                if problem is not None:
                    problems.append(problem)
        self._problems = tuple(problems)
        self._remember(presented, now)
        return self._watched()

    # --- the places ---------------------------------------------------------------------------

    def _readers(self, problems: list[str]) -> list[tuple[str, Any]]:
        """Each place with the call that reads it; a path that matches nothing is a problem."""
        password = self._config.pkcs12_password
        timeout = self._config.timeout.total_seconds()
        readers: list[tuple[str, Any]] = []
        for entry in self._config.paths:
            files, named = _expand(entry)
            if files is None:
                problems.append(f"cannot read {entry}: No such file or directory")
                if entry in self._places:
                    readers.append((entry, None))
                continue
            readers.extend((str(path), _file_reader(path, password, named=named)) for path in files)
        readers.extend(
            (endpoint.place, _endpoint_reader(endpoint, timeout))
            for endpoint in self._config.endpoints
        )
        return readers

    # --- memory -------------------------------------------------------------------------------

    def _remember(self, presented: Mapping[str, list[WatchedToken] | None], now: datetime) -> None:
        """Keep what each place presents now; retire what no place presents any more."""
        before: dict[str, tuple[WatchedToken, set[str]]] = {}
        for place, seen in self._places.items():
            for fp, (token, _) in seen.items():
                before.setdefault(fp, (token, set()))[1].add(place)
        self._places = {
            place: self._presenting(place, tokens, now) for place, tokens in presented.items()
        }
        after = {fp for seen in self._places.values() for fp in seen}
        for fp, (token, where) in before.items():
            if fp not in after:
                self._retired[fp] = _Retired(token, frozenset(where), now)
        for fp in [
            fp for fp, r in self._retired.items() if fp in after or now - r.since > _RETIRED_FOR
        ]:
            del self._retired[fp]

    def _presenting(
        self, place: str, tokens: list[WatchedToken] | None, now: datetime
    ) -> dict[str, tuple[WatchedToken, datetime]]:
        """What *place* counts as presenting after this pass's reading (*tokens*)."""
        previous = self._places.get(place, {})
        if tokens is None:  # unreadable this pass: what it presented last stays watched
            return previous
        seen = {token.token_id: (token, now) for token in tokens}
        if place in self._endpoint_places:  # alternating certificates: keep those seen lately
            for fp, (token, at) in previous.items():
                if fp not in seen and now - at < self._config.remember:
                    seen[fp] = (token, at)
        return seen

    def _watched(self) -> dict[str, WatchedToken]:
        """One credential per fingerprint, with every place it was found at."""
        tokens: dict[str, WatchedToken] = {}
        where: dict[str, list[str]] = {}
        for place, seen in self._places.items():
            for fp, (token, _) in seen.items():
                tokens.setdefault(fp, token)
                where.setdefault(fp, []).append(place)
        return {
            fp: token
            if len(where[fp]) == 1 and token.labels.get("location") == where[fp][0]
            else replace(token, labels={**token.labels, "location": ", ".join(where[fp])})
            for fp, token in tokens.items()
        }

    def _renewed(self, retired: _Retired) -> bool:
        """Whether a place that presented *retired* now presents a later one of its name."""
        old = retired.token
        for place in retired.places:
            for token, _ in self._places.get(place, {}).values():
                if (
                    token.name == old.name
                    and token.expires_at is not None
                    and old.expires_at is not None
                    and token.expires_at > old.expires_at
                ):
                    return True
        return False


def _expand(entry: str) -> tuple[list[Path] | None, bool]:
    """The files of a path entry, and whether the entry named the file itself.

    A glob is matched afresh every pass (``**`` recursive); a directory gives its files (not
    hidden ones, not its subdirectories: a Kubernetes secret mount's ``..data`` would repeat
    them). None: the entry names nothing.
    """
    if _GLOB & set(entry):
        matches = sorted(glob.glob(entry, recursive=True))  # noqa: PTH207 - a pattern from config
        return [Path(match) for match in matches if Path(match).is_file()], False
    path = Path(entry)
    if path.is_dir():
        return sorted(
            child for child in path.iterdir() if child.is_file() and not child.name.startswith(".")
        ), False
    if path.exists():
        return [path], True
    return None, True


def _file_reader(path: Path, password: bytes | None, *, named: bool) -> Any:
    from notifier.sources.certificates import read_file  # noqa: PLC0415 - see read()

    return lambda: read_file(path, password, named=named)


def _endpoint_reader(endpoint: Endpoint, timeout: float) -> Any:
    from notifier.sources.certificates import read_endpoint  # noqa: PLC0415 - see read()

    return lambda: read_endpoint(endpoint, timeout)
