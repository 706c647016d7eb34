"""What start-up built, kept out of the cyclic garbage collector's way.

Before its first pass a process has imported SQLAlchemy, pydantic, structlog and the rest and
built its engine, sinks and (for ``run``) the web app and the scheduler: tens of thousands of
objects the collector tracks, which live as long as the process. Each full collection walks
all of them again, and a first pass over 20,000 notices allocates enough to run a dozen:
with 55,000 such objects (``bench/pass_cost.py``'s process) each took 35 to 40 ms, a tenth
of the pass (docs/performance.md). The command line freezes what its own imports built
(``notifier/cli/__init__.py``); what the command imports and builds after that (25,000
objects for ``check`` on SQLite, 42,000 for ``run`` with its web app) is settled here.
:func:`settle` collects what start-up left behind and moves the survivors to the permanent
generation (:func:`gc.freeze`), so that later collections walk only what came after.
Reference counting still frees those objects; only cycles among them would never be
collected, and start-up's are collected first.
"""

from __future__ import annotations

import gc

__all__ = ["settle"]


def settle() -> int:
    """Collect start-up's garbage, then freeze what survived; return how many are frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
