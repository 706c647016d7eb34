"""Index the tokens for paged lists and for search (#14).

A list pages by a keyset: each page starts after the last row of the one before, in the
order the list is sorted by, so every sort needs an index in that order, ending with the id
that breaks ties. Expiry has one (``ix_tokens_expiry_keyset``); this adds name and creation,
and (owner, expiry) for a list of one owner's tokens, soonest first. Notifications page by
(expiry, id).

Search (``q``) finds the tokens whose name starts with the text, ignoring case, or whose id
starts with it, from an index of each: ``lower(name)`` and the id, compared byte by byte (in
PostgreSQL's "C" collation, whatever the database's own), so a prefix is one range scan.
These are expression indexes, outside the models (``models.SEARCH_SCHEMA``); SQLite's own
primary-key index already orders ids by their bytes. A search for a substring anywhere in
the name was measured with FTS5's trigram tokenizer and left out: its triggers cost 40-65 µs
for each token written on SQLite, which would have tripled an import (issue #14's notes).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = {
    "ix_tokens_name": ("tokens", ["name", "id"]),
    "ix_tokens_created": ("tokens", ["created_at", "id"]),
    "ix_tokens_owner": ("tokens", ["owner", "expires_at", "id"]),
    "ix_notifications_expiry": ("notifications", ["expires_at", "id"]),
}
_SEARCH = {
    "sqlite": {"ix_tokens_name_folded": "lower(name), id"},
    "postgresql": {
        "ix_tokens_name_folded": '(lower(name) COLLATE "C"), id',
        "ix_tokens_id_prefix": '(id COLLATE "C")',
    },
}


def upgrade() -> None:
    for name, (table, columns) in _INDEXES.items():
        op.create_index(name, table, columns)
    for name, expression in _SEARCH[op.get_bind().dialect.name].items():
        op.execute(sa.text(f"CREATE INDEX {name} ON tokens ({expression})"))


def downgrade() -> None:
    for name in _SEARCH[op.get_bind().dialect.name]:
        op.execute(sa.text(f"DROP INDEX {name}"))
    for name, (table, _) in _INDEXES.items():
        op.drop_index(name, table)
