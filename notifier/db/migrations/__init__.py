"""Alembic migrations of notifier's schema."""
