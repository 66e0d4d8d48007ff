"""Alembic's migration environment for the feedback store (run by bot.stores.database.migrate)."""
