"""Short public ids: twelve lowercase base32 characters, one at a time or many at once."""

from __future__ import annotations

import re

import pytest

from notifier.core.ids import ID_LENGTH, short_id, short_ids

SHAPE = re.compile(f"[a-z2-7]{{{ID_LENGTH}}}")


def test_one_id_has_the_shape() -> None:
    assert SHAPE.fullmatch(short_id())


@pytest.mark.parametrize("count", [0, 1, 2, 3, 500, 2001])
def test_many_ids_come_in_the_count_asked_with_the_same_shape(count: int) -> None:
    ids = short_ids(count)
    assert len(ids) == count
    assert all(SHAPE.fullmatch(value) for value in ids)


def test_many_ids_differ() -> None:
    """60 random bits each: 100,000 of them do not collide (odds about 4e-9)."""
    ids = short_ids(100_000)
    assert len(set(ids)) == len(ids)


def test_every_character_carries_randomness() -> None:
    """No position is fixed by padding: each takes many values over a few thousand ids."""
    ids = short_ids(4_000)
    for position in range(ID_LENGTH):
        assert len({value[position] for value in ids}) == 32  # base32
