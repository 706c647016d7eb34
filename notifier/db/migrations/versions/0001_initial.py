"""Tokens and their audit trail, delivery state, UI notifications and shared facts.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from notifier.db.models import UtcDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(100), nullable=True),
        sa.Column("permissions", sa.JSON(), nullable=False),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("secret_hash", sa.String(64), nullable=True, unique=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.Column("last_used_at", UtcDateTime(), nullable=True),
        sa.Column("rotated_from", sa.String(64), nullable=True),
        sa.Column("superseded_by", sa.String(64), nullable=True),
    )
    op.create_index(
        "ix_tokens_expiry_keyset", "tokens", ["expires_at", "id", "revoked_at", "superseded_by"]
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("token_id", sa.String(64), nullable=True),
        sa.Column("token_name", sa.String(200), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index("ix_audit_events_token", "audit_events", ["token_id"])
    op.create_table(
        "delivery_state",
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("token_id", sa.String(255), primary_key=True),
        sa.Column("sink", sa.String(64), primary_key=True),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.Column("next_due_at", UtcDateTime(), nullable=True),
        sa.Column("last_sent_at", UtcDateTime(), nullable=True),
        sa.Column("last_notice_id", sa.String(64), nullable=True),
        sa.Column("last_kind", sa.String(16), nullable=True),
        sa.Column("last_threshold_s", sa.Integer(), nullable=True),
        sa.Column("notices_sent", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_attempt_at", UtcDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(100), nullable=True),
        sa.Column("lease_until", UtcDateTime(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_delivery_state_next_due", "delivery_state", ["sink", "next_due_at"])
    op.create_index("ix_delivery_state_open", "delivery_state", ["source", "sink", "last_kind"])
    op.create_table(
        "notifications",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("token_id", sa.String(255), nullable=False),
        sa.Column("token_name", sa.String(200), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("hint", sa.Text(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.Column("days_left", sa.Integer(), nullable=True),
        sa.Column("first_seen", UtcDateTime(), nullable=False),
        sa.Column("last_seen", UtcDateTime(), nullable=False),
        sa.Column("occurrences", sa.Integer(), nullable=False),
        sa.Column("acknowledged_at", UtcDateTime(), nullable=True),
        sa.Column("resolved_at", UtcDateTime(), nullable=True),
    )
    op.create_index("ux_notifications_token", "notifications", ["source", "token_id"], unique=True)
    op.create_index("ix_notifications_last_seen", "notifications", ["last_seen"])
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )

    op.create_table(
        "snoozes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("token_id", sa.String(255), nullable=False),
        sa.Column("sink", sa.String(64), nullable=True),
        sa.Column("until", UtcDateTime(), nullable=True),
        sa.Column("threshold_s", sa.Integer(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
    )
    op.create_index("ix_snoozes_token", "snoozes", ["source", "token_id"])
    op.create_table(
        "sink_leases",
        sa.Column("sink", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("lease_until", UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sink_leases")
    op.drop_table("snoozes")
    op.drop_table("meta")
    op.drop_table("notifications")
    op.drop_table("delivery_state")
    op.drop_table("audit_events")
    op.drop_table("tokens")
