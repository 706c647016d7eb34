"""The kinds of token source, their instance names, and the check of an instance's options.

A source instance is named ``kind`` or ``kind:label`` (``store``, ``sql``, ``sql:billing``,
``file:partners``, ``vault:prod``, ``x509``: a kind is lowercase letters and digits). Each
kind's options and their checks live beside the kind (sources/sql.py, sources/file.py, ...);
config/instances.py gathers the options and calls :func:`check_source`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from notifier.config.options import KindOptions, OptionError
from notifier.sources import aws, file, github, gitlab, sql, stackrox, vault, x509
from notifier.sources.aws import AwsSourceConfig
from notifier.sources.file import FileSourceConfig
from notifier.sources.github import GitHubSourceConfig
from notifier.sources.gitlab import GitLabSourceConfig
from notifier.sources.sql import SqlSourceConfig
from notifier.sources.stackrox import StackRoxSourceConfig
from notifier.sources.vault import VaultSourceConfig
from notifier.sources.x509 import X509SourceConfig


@dataclass(frozen=True, slots=True)
class StoreSourceConfig:
    """The daemon's own tokens table."""

    name: str = "store"
    options: Mapping[str, Any] = field(default_factory=dict)


SourceConfig = (
    StoreSourceConfig
    | SqlSourceConfig
    | FileSourceConfig
    | VaultSourceConfig
    | X509SourceConfig
    | StackRoxSourceConfig
    | GitHubSourceConfig
    | GitLabSourceConfig
    | AwsSourceConfig
)


def _store(name: str, options: Mapping[str, Any]) -> StoreSourceConfig:
    del name, options  # the store takes no options: there is one store
    return StoreSourceConfig()


# kind -> (its options, their check)
SOURCE_KINDS: dict[str, tuple[KindOptions, Callable[[str, Mapping[str, Any]], SourceConfig]]] = {
    "store": (KindOptions(()), _store),
    "sql": (sql.OPTIONS, sql.check_options),
    "file": (file.OPTIONS, file.check_options),
    "vault": (vault.OPTIONS, vault.check_options),
    "x509": (x509.OPTIONS, x509.check_options),
    "stackrox": (stackrox.OPTIONS, stackrox.check_options),
    "github": (github.OPTIONS, github.check_options),
    "gitlab": (gitlab.OPTIONS, gitlab.check_options),
    "aws": (aws.OPTIONS, aws.check_options),
}
# Options that are secret in some kind: a file's value for one is checked even where unknown.
SECRET_OPTIONS = frozenset().union(*(options.secrets for options, _ in SOURCE_KINDS.values()))
_NAME = re.compile(r"([a-z][a-z0-9]*)(?::([a-z0-9][a-z0-9_-]{0,31}))?")


def parse_source_name(name: str) -> tuple[str, str | None]:
    """Split ``kind[:label]`` and check the kind exists."""
    match = _NAME.fullmatch(name)
    if match is None:
        raise OptionError(None, f"{name!r} is not a source name (kind or kind:label, lowercase)")
    kind, label = match.groups()
    if kind not in SOURCE_KINDS:
        raise OptionError(None, f"unknown source {kind!r} (known: {', '.join(SOURCE_KINDS)})")
    if kind == "store" and label is not None:
        raise OptionError(None, "the store source has no label: there is one store")
    return kind, label


def source_options(name: str) -> KindOptions:
    """The options the source instance *name* takes."""
    kind, _ = parse_source_name(name)
    return SOURCE_KINDS[kind][0]


def check_source(name: str, options: Mapping[str, Any]) -> SourceConfig:
    """Check the options of the source instance *name*."""
    kind, _ = parse_source_name(name)
    known, check = SOURCE_KINDS[kind]
    unknown = sorted(set(options) - set(known.names))
    if unknown:
        raise OptionError(unknown[0], f"not an option of a {kind} source")
    return check(name, options)
