"""The ``file`` source: a JSON, JSONL or YAML file of tokens, re-read on every pass.

The file holds a list of tokens (or ``{"tokens": [...]}``), each with ``id``, ``name`` and
``expires_at``, and optionally ``revoked_at`` and ``owner``; other token fields (``role``,
``labels``, ...) are accepted and ignored here. A time without a zone is read in the
configured zone (UTC by default). One bad row makes the whole file fail for that pass, with
the row named, rather than silently dropping a token.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from notifier.config.options import KindOptions, OptionError, option_timezone
from notifier.core.model import WatchedToken
from notifier.sources import ReadsWhole, SourceError

OPTIONS = KindOptions(("path", "timezone"))


@dataclass(frozen=True, slots=True)
class FileSourceConfig:
    """A JSON, JSONL or YAML file of tokens, re-read on every pass."""

    name: str
    path: Path
    timezone: ZoneInfo


def check_options(name: str, options: Mapping[str, Any]) -> FileSourceConfig:
    """Check the options of the file source *name*."""
    timezone = option_timezone(options.get("timezone"))
    path = options.get("path")
    if not isinstance(path, str) or not path.strip():
        raise OptionError("path", "is required: the file of tokens to watch")
    return FileSourceConfig(name=name, path=Path(path.strip()), timezone=timezone)


_FIELDS = frozenset(
    {
        "id",
        "name",
        "expires_at",
        "revoked_at",
        "owner",
        "created_at",
        "role",
        "permissions",
        "labels",
        "description",
    }
)


class FileSource(ReadsWhole):
    """Tokens listed in a file."""

    def __init__(self, config: FileSourceConfig) -> None:
        self.name = config.name
        self._config = config

    def snapshot(self, now: datetime) -> dict[str, WatchedToken]:
        """Every token of the file, by id."""
        del now  # read as it stands
        return {token.token_id: token for token in self.read()}

    def read(self) -> list[WatchedToken]:
        """Every token in the file."""
        path = self._config.path
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            raise SourceError(f"cannot read {path}: {reason}") from None
        rows = list(self._rows(text))
        tokens: list[WatchedToken] = []
        seen: dict[str, str] = {}
        for where, row in rows:
            token = self._token(where, row)
            if token.token_id in seen:
                raise SourceError(
                    f"{path}: {where}: id {token.token_id!r} repeats {seen[token.token_id]}"
                )
            seen[token.token_id] = where
            tokens.append(token)
        return tokens

    def close(self) -> None:
        """Nothing to release."""

    def _rows(self, text: str) -> list[tuple[str, Any]]:
        path = self._config.path
        suffix = path.suffix.lower()
        try:
            if suffix in {".jsonl", ".ndjson"}:
                return [
                    (f"line {number}", json.loads(line))
                    for number, line in enumerate(text.splitlines(), start=1)
                    if line.strip()
                ]
            if suffix == ".json":
                document = json.loads(text)
            elif suffix in {".yaml", ".yml"}:
                document = _yaml_document(path, text)
            else:
                raise SourceError(f"{path}: unknown format (use .json, .jsonl or .yaml)")
        except json.JSONDecodeError as error:
            raise SourceError(f"{path}: {error}".splitlines()[0]) from None
        if isinstance(document, dict) and set(document) == {"tokens"}:
            document = document["tokens"]
        if document is None:
            return []
        if not isinstance(document, list):
            raise SourceError(f'{path}: expected a list of tokens or {{"tokens": [...]}}')
        return [(f"token #{index}", row) for index, row in enumerate(document, start=1)]

    def _token(self, where: str, row: Any) -> WatchedToken:
        path = self._config.path
        if not isinstance(row, dict):
            raise SourceError(f"{path}: {where}: expected an object")
        unknown = sorted(set(row) - _FIELDS)
        if unknown:
            raise SourceError(f"{path}: {where}: unknown field {unknown[0]!r}")
        for required in ("id", "name", "expires_at"):
            if required not in row:
                raise SourceError(f"{path}: {where}: {required} is missing")
        if not isinstance(row["id"], (str, int)) or str(row["id"]) == "":
            raise SourceError(f"{path}: {where}: id must be a non-empty string")
        owner = row.get("owner")
        labels = row.get("labels") or {}
        if not isinstance(labels, dict):
            raise SourceError(f"{path}: {where}: labels must be a mapping of key: value")
        return WatchedToken(
            source=self.name,
            token_id=str(row["id"]),
            name=str(row["name"]),
            expires_at=self._time(where, "expires_at", row["expires_at"]),
            revoked_at=self._time(where, "revoked_at", row.get("revoked_at")),
            owner=None if owner is None else str(owner),
            created_at=self._time(where, "created_at", row.get("created_at")),
            labels={str(key): str(value) for key, value in labels.items()},
        )

    def _time(self, where: str, field: str, value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, date) and not isinstance(value, datetime):
            value = datetime(value.year, value.month, value.day)  # noqa: DTZ001 - zone below
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.strip())
            except ValueError:
                raise SourceError(
                    f"{self._config.path}: {where}: {field} {value!r} is not an ISO 8601 time"
                ) from None
        if not isinstance(value, datetime):
            raise SourceError(f"{self._config.path}: {where}: {field} is not a time")
        moment: datetime = value
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self._config.timezone)
        return moment.astimezone(UTC)


def _yaml_document(path: Path, text: str) -> Any:
    """The YAML document in *text*; PyYAML is imported only for a YAML file (issue #13)."""
    import yaml  # noqa: PLC0415 - the settings import this module, every command with them

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SourceError(f"{path}: {error}".splitlines()[0]) from None
