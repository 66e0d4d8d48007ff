"""The Discord adapter end to end: the real discord.py client over loopback against the emulator.

Named discord_adapter, not discord, so that it can never shadow the `discord` package.
"""
