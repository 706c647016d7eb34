"""Delivery state: index only what the pass reads by, so its key lookups stay key lookups.

Every pass finds a (token, sink) state by its primary key. PostgreSQL's planner, before it
has statistics on a freshly filled table (a first pass over a large fleet), weighed the
other indexes that start with the sink as equally good, and used them: each record scanned
the sink's rows, and a first pass over 10,000 tokens took 15 s instead of 2.

- ``ix_delivery_state_next_due`` (sink, next_due_at) goes: no query of the pass reads by it
  (the due query joins each token's state by key), and every record had to update it.
- ``ix_delivery_state_open`` becomes partial: (source, sink, token_id) where last_kind =
  'expiring'. It serves the closing query's keyset walk over a sink's open loops, in token
  order, and no query that does not say last_kind = 'expiring' can take it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN_LOOP = "last_kind = 'expiring'"


def upgrade() -> None:
    op.drop_index("ix_delivery_state_next_due", "delivery_state")
    op.drop_index("ix_delivery_state_open", "delivery_state")
    op.create_index(
        "ix_delivery_state_open",
        "delivery_state",
        ["source", "sink", "token_id"],
        sqlite_where=sa.text(_OPEN_LOOP),
        postgresql_where=sa.text(_OPEN_LOOP),
    )


def downgrade() -> None:
    op.drop_index("ix_delivery_state_open", "delivery_state")
    op.create_index("ix_delivery_state_open", "delivery_state", ["source", "sink", "last_kind"])
    op.create_index("ix_delivery_state_next_due", "delivery_state", ["sink", "next_due_at"])
