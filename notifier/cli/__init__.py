"""The ``notifier`` command: data on stdout, logs on stderr, sysexits exit codes.

Exit codes: 0 ok; 1 the operation failed; 2 usage; 65 bad input data (import); 66 an input
file is unreadable; 69 the database (or the HTTP port) is unavailable; 75 the pass ran but
some deliveries failed (or a source could not be read) and will be retried; 78 the
configuration is invalid; 130 and 143 interrupted by SIGINT and SIGTERM (one line, no
traceback).
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Sequence

# structlog's console helpers use these when they are installed; notifier renders its own
# lines (runtime/logs.py) and never asks structlog for a console renderer or a rich traceback.
_CONSOLE_EXTRAS = ("rich", "better_exceptions", "colorama")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line (*argv*, or the process's own); return the exit code.

    ``notifier --version`` answers here, before the command's modules (SQLAlchemy, pydantic,
    structlog) are imported: scripts and probes call it, and it need not cost a start-up.

    Run as the process's own command line (the installed ``notifier``, ``python -m
    notifier``), the objects that exist when the command is done are frozen out of the
    garbage collector before the interpreter exits: its last collections would otherwise
    walk every object of SQLAlchemy and pydantic once more, a tenth of a short command's
    time. atexit handlers, log flushing and the close of stdout still run as before.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        import notifier  # noqa: PLC0415 - the package's face only: its version

        sys.stdout.write(f"notifier {notifier.__version__}\n")
        return 0
    import_structlog_without_console_extras()
    from notifier.cli.app import main as run  # noqa: PLC0415 - everything else of the command

    code = run(args)
    if argv is None:
        gc.freeze()  # the process ends now; a test calling main(argv) keeps its collector
    return code


def import_structlog_without_console_extras() -> None:
    """Import structlog as it is where rich is not installed, which it is not in a deployment.

    ``import structlog`` always imports ``structlog.dev``, which imports rich (and with it
    pygments) when it can, for a console renderer and tracebacks notifier does not use: in
    the dev venv (schemathesis brings rich) that was 8 % of a short command's start-up and
    5 MiB of the idle daemon. Each extra not yet imported is marked missing while structlog
    imports (``None`` in ``sys.modules`` makes its ``import`` fail, as for a package that is
    not installed) and unmarked after, so anything else can still import it. Once structlog
    is imported (by a test, in-process) this changes nothing.
    """
    if "structlog" in sys.modules:
        return
    hidden = [name for name in _CONSOLE_EXTRAS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment] # the documented "not importable"
    try:
        import structlog  # noqa: F401, PLC0415 - imported here so that the extras stay out
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]
