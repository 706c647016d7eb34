"""What a command imports before it answers: ``--version`` costs an interpreter's start-up.

Scripts and probes call ``notifier --version``; it answers from notifier/cli/__init__.py,
before SQLAlchemy, pydantic or structlog are imported (issue #13: a command imports only
what it needs). Timings are benchmarks' business; the imports are what can be tested.
"""

from __future__ import annotations

import subprocess
import sys

_HEAVY = ("sqlalchemy", "pydantic", "structlog", "notifier.cli.app", "notifier.config")
_PROBE = """
import sys
from notifier.cli import main
code = main(["--version"])
print("heavy:", ",".join(sorted(m for m in {heavy!r} if m in sys.modules)))
sys.exit(code)
"""


def test_version_answers_before_any_heavy_import() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=_HEAVY)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    version, heavy = result.stdout.splitlines()
    assert version.startswith("notifier ")
    assert heavy == "heavy: ", heavy


def test_anything_else_goes_through_the_whole_command() -> None:
    """The fast path is for --version alone: --help still lists every command."""
    result = subprocess.run(
        [sys.executable, "-m", "notifier", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "tokens" in result.stdout
    assert "serve" in result.stdout
