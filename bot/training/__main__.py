"""`python -m bot.training`, the training process's name before it moved to `python -m bot.trainer`:
kept so that scripts and trainer deployments written for it keep working. It runs that module as
the program (nothing here imports the training process: this package is the bot's side)."""

import runpy

runpy.run_module("bot.trainer", run_name="__main__", alter_sys=True)
