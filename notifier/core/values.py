"""The decorator of the value types a pass builds for every notice: frozen to the type checker.

A pass builds a token, a state, a notice and two decisions for each notice it sends, and a
frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``: 1.7 µs for
15 fields against 0.6 µs for plain assignments, about 7 % of a first pass over 20,000
notices on SQLite (docs/performance.md). :func:`value` makes a slotted dataclass with plain
assignments and the hash of a frozen one, and tells the type checker it is frozen
(:pep:`681`'s ``frozen_default``): mypy strict, which runs over the package and its tests,
refuses an assignment to a field, as it does for ``@dataclass(frozen=True)``
(``tests/unit/test_model.py`` checks that it still does). Only an assignment that mypy never
sees (``setattr`` with a name in a string) would get through at run time.

Other dataclasses keep ``frozen=True``: they are not built once per notice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar, dataclass_transform

__all__ = ["value"]

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def value(cls: type[_T]) -> type[_T]:
    """A slotted dataclass with frozen semantics for the type checker, and its hash."""
    make: Callable[[type[_T]], type[_T]] = dataclass(slots=True, unsafe_hash=True)
    return make(cls)
