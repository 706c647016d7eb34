"""The deploy/ files under test: where they are, the tools that check them, what they name."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"


def tool(name: str) -> str:
    """The path of a command-line tool, or skip the test saying which one is missing."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} is not installed here")
    return found


def example_variables() -> dict[str, bool]:
    """Every variable config.example.env lists, with whether it is a secret."""
    variables: dict[str, bool] = {}
    secret = False
    for line in (REPO / "config.example.env").read_text(encoding="utf-8").splitlines():
        if line.startswith("# Secret:"):
            secret = True
        elif match := re.fullmatch(r"#([A-Z][A-Z0-9_]*)=.*", line):
            variables[match.group(1)] = secret
            secret = False
    return variables


def credential_name(variable: str) -> str:
    """The file in $CREDENTIALS_DIRECTORY a secret is read from (token_pepper for the pepper)."""
    return variable.removeprefix("NOTIFIER_").lower()
