"""The ``notifier`` command: data on stdout, logs on stderr, sysexits exit codes.

Exit codes: 0 ok; 1 the operation failed; 2 usage; 65 bad input data (import); 66 an input
file is unreadable; 69 the database (or the HTTP port) is unavailable; 75 the pass ran but
some deliveries failed (or a source could not be read) and will be retried; 78 the
configuration is invalid; 130 and 143 interrupted by SIGINT and SIGTERM (one line, no
traceback).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code.

    ``notifier --version`` answers here, before the command's modules (SQLAlchemy, pydantic,
    structlog) are imported: scripts and probes call it, and it need not cost a start-up.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        import notifier  # noqa: PLC0415 - the package's face only: its version

        sys.stdout.write(f"notifier {notifier.__version__}\n")
        return 0
    from notifier.cli.app import main as run  # noqa: PLC0415 - everything else of the command

    return run(args)
