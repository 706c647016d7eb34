"""What start-up built, kept out of the cyclic garbage collector's way.

A process imports SQLAlchemy, pydantic, structlog and the rest before its first pass: about
55,000 objects the collector tracks, which live as long as the process. Each full collection
walks all of them again (35 to 40 ms each here), and a first pass over 20,000 notices allocates
enough to run a dozen: a tenth of its time (docs/performance.md). Once start-up is over,
:func:`settle` collects what start-up left behind and moves the survivors to the permanent
generation (:func:`gc.freeze`), so that later collections walk only what came after.
Reference counting still frees those objects; only cycles among them would never be collected,
and start-up's are collected first.
"""

from __future__ import annotations

import gc

__all__ = ["settle"]


def settle() -> int:
    """Collect start-up's garbage, then freeze what survived; return how many are frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
