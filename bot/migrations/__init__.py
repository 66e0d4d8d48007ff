"""Alembic's migration environment for the feedback store (run by bot.feedback_db.migrate)."""
