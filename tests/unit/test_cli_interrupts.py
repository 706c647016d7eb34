"""The command line's signal rules, in this process: a signal raises until the work is done."""

from __future__ import annotations

import os
import signal

import pytest

from notifier.cli import interrupts
from notifier.cli.interrupts import Interrupted, installed


def test_a_signal_while_the_command_works_interrupts_it() -> None:
    with pytest.raises(Interrupted) as caught, installed((signal.SIGTERM,)):
        os.kill(os.getpid(), signal.SIGTERM)
    assert caught.value.exit_code == 128 + signal.SIGTERM


def test_a_signal_after_the_command_is_done_changes_nothing() -> None:
    """Once the command has answered, winding down is not interrupted: its answer stands."""
    with installed((signal.SIGTERM,)):
        interrupts.done()
        os.kill(os.getpid(), signal.SIGTERM)
    # The next command starts afresh: its signals interrupt it again.
    with pytest.raises(Interrupted), installed((signal.SIGTERM,)):
        os.kill(os.getpid(), signal.SIGTERM)
