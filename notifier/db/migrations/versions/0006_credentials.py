"""The credentials each source other than the store found in its last pass (#15).

``notifier credentials list``, ``GET /api/v1/credentials`` and the web page list every
watched credential: the store's tokens from ``tokens``, the rest from this table, which each
pass brings up to date with what each source read. Indexed for the list's sorts by expiry
and by name, each ending with (source, id), which is unique.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from notifier.db.models import UtcDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "credentials",
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("owner", sa.String(200)),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("created_at", UtcDateTime),
        sa.Column("expires_at", UtcDateTime),
        sa.Column("first_seen", UtcDateTime, nullable=False),
    )
    op.create_index("ix_credentials_expiry", "credentials", ["expires_at", "source", "id"])
    op.create_index("ix_credentials_name", "credentials", ["name", "source", "id"])


def downgrade() -> None:
    op.drop_table("credentials")
