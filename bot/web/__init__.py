"""The admin console: server-rendered pages over the stores, every change through bot/commands.py."""
