"""Index when notifications were acknowledged and resolved: the live stream polls by them.

The stream asks for rows seen, acknowledged or resolved since its cursor; with an index on
each of the three times, that OR is three index range scans instead of a table scan on
every poll of every open page, and MAX() of each is one index probe.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_notifications_acknowledged_at", "notifications", ["acknowledged_at"])
    op.create_index("ix_notifications_resolved_at", "notifications", ["resolved_at"])


def downgrade() -> None:
    op.drop_index("ix_notifications_resolved_at", "notifications")
    op.drop_index("ix_notifications_acknowledged_at", "notifications")
