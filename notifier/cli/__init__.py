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
    notifier``), the garbage collector is kept from walking objects that live as long as
    the process, which is most of what a short command's collections cost: it is off while
    the command's modules are imported (they make almost no garbage: some hundred objects),
    which are then frozen out of later collections; and what exists when the command is
    done is frozen before the interpreter exits, whose last collections would walk it all
    once more. atexit handlers, log flushing and the close of stdout still run as before.
    A test calling ``main(argv)`` keeps its collector as it was, but for what ``check``,
    ``run`` and ``serve`` freeze once their start-up is over, before a pass
    (:func:`notifier.runtime.heap.settle`: what the command built after these imports).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        import notifier  # noqa: PLC0415 - the package's face only: its version

        sys.stdout.write(f"notifier {notifier.__version__}\n")
        return 0
    own_process = argv is None
    if own_process:
        gc.disable()
    try:
        import_structlog_without_console_extras()
        from notifier.cli.app import main as run  # noqa: PLC0415 - the rest of the command
    finally:
        if own_process:
            gc.freeze()
            gc.enable()
    code = run(args)
    if own_process:
        gc.freeze()  # the process ends now
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
