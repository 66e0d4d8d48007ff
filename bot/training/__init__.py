"""What the bot does about training: start a run in its own process (runner.py) or leave it to a
trainer elsewhere (remote.py), follow its status (status.py), render training rows exactly as
serving renders prompts (dataset.py), and write them for `feedback export` (export.py). The
training process itself is bot/finetune/. Import the module you need: this package imports nothing
heavy."""
