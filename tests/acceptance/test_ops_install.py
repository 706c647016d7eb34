"""The install instructions: a distribution name of our own, and commands that work as written.

``notifier`` on PyPI is an unrelated project, so ``pip install notifier`` (or
``notifier[apprise]``) would install somebody else's code. Every instruction installs from a
clone (``.``), from a wheel built from one, or names a third-party library by its own name.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

from tests.deploy import REPO

DISTRIBUTION = "credential-expiry-notifier"
# Every place that tells an operator what to install: docs, README, deploy files, hints in code.
INSTRUCTED = [
    REPO / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
    *sorted(path for path in (REPO / "deploy").rglob("*") if path.is_file()),
    *sorted((REPO / "notifier").rglob("*.py")),
]
PIP_INSTALL = re.compile(r"pip install ([^`\n\"]*)")


def instructions() -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    for path in INSTRUCTED:
        text = path.read_text(encoding="utf-8", errors="replace")
        found.extend((path, match.group(1).strip()) for match in PIP_INSTALL.finditer(text))
    return found


def test_the_distribution_has_a_name_of_its_own() -> None:
    """The distribution is credential-expiry-notifier; the command stays notifier."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == DISTRIBUTION
    assert project["scripts"] == {"notifier": "notifier.cli:main"}


def test_no_instruction_installs_the_unrelated_notifier_from_pypi() -> None:
    """No `pip install` anywhere names `notifier` (or one of its extras) as a requirement."""
    assert instructions(), "the docs give install commands"
    for path, arguments in instructions():
        for word in arguments.split():
            bare = word.strip("'\"").split("[", 1)[0]
            assert bare != "notifier", f"{path}: pip install {arguments}"


def test_every_wheel_named_in_the_docs_is_the_one_a_build_makes(tmp_path: Path) -> None:
    """The wheel the docs install by glob is what `pip wheel .` builds, and it installs."""
    pytest.importorskip("setuptools", minversion="77", reason="the dev extras install it")
    globs = {
        word
        for _, arguments in instructions()
        for word in arguments.split()
        if word.endswith(".whl")
    }
    assert globs, "docs/operations.md installs a built wheel"
    built = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"),
            *("-w", str(tmp_path / "dist"), str(REPO)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    for pattern in globs:
        assert fnmatch.fnmatch(f"dist/{wheel.name}", pattern), (pattern, wheel.name)
    # Installed as the docs say (without its dependencies: the point is the name and the
    # command, and the test machine need not reach an index).
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(target)
    installed = subprocess.run(
        [str(target / "bin" / "pip"), "install", "--no-deps", "-q", str(wheel)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    assert (target / "bin" / "notifier").exists()
    shown = subprocess.run(
        [str(target / "bin" / "pip"), "show", DISTRIBUTION],
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert f"Name: {DISTRIBUTION}" in shown.stdout
