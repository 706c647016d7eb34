"""SIGINT and SIGTERM for the commands: one line and exit 130 or 143, never a traceback.

While a command runs, either signal raises :class:`Interrupted` in the main thread, so that
``with`` blocks unwind (an open transaction rolls back) and the command line can say what
was done. Around a commit, :class:`Deferral` holds the signal back until the caller has
noted that the commit returned: what it then reports about the interruption is true.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

_EXIT_BASE = 128  # a shell's code for a process ended by signal N: 128 + N


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; not an :class:`Exception`, so no handler swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """130 for SIGINT, 143 for SIGTERM."""
        return _EXIT_BASE + self.signum


class _State:
    """What the handler knows: whether signals are held back, and which one came."""

    def __init__(self) -> None:
        self.deferring = 0
        self.pending: int | None = None
        self.raised = False
        self.done = False

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        del frame
        if self.raised:
            return  # already stopping: a second Ctrl-C must not interrupt the unwinding
        if self.done:
            return  # the command has done its work and said so: its answer stands
        if self.deferring:
            if self.pending is None:
                self.pending = signum
            return
        self.raised = True
        raise Interrupted(signum)


_state = _State()


@contextmanager
def installed(signals: tuple[signal.Signals, ...]) -> Iterator[None]:
    """Turn *signals* into :class:`Interrupted` in the main thread; restore them on exit.

    Off the main thread (a test calling the CLI in a thread) nothing is installed: only the
    main thread may set signal handlers, and only it runs them.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[signal.Signals, Any] = {}
    _state.deferring, _state.pending, _state.raised, _state.done = 0, None, False, False
    try:
        for sig in signals:
            previous[sig] = signal.signal(sig, _state.on_signal)
        yield
    finally:
        for sig, handler in previous.items():
            # None: a handler not set from Python; the default is the nearest we can restore.
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def done() -> None:
    """The command has done its work and written its answer: later signals change neither.

    A signal while the process winds down then prints no "interrupted" line after, say,
    "Imported 40000 token(s)", and the command's exit code stands.
    """
    _state.done = True


class Deferral:
    """Hold SIGINT/SIGTERM back from :meth:`start` until :meth:`end`, which then raises."""

    def __init__(self) -> None:
        self._started = False

    def start(self) -> None:
        """From now on a signal is noted, not acted on."""
        if not self._started:
            self._started = True
            _state.deferring += 1

    def end(self) -> None:
        """Stop holding signals back; raise :class:`Interrupted` if one came meanwhile."""
        if not self._started:
            return
        self._started = False
        _state.deferring -= 1
        if not _state.deferring and _state.pending is not None:
            signum, _state.pending = _state.pending, None
            _state.raised = True
            raise Interrupted(signum)
