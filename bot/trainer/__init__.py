"""The training process (`python -m bot.trainer`): pipeline, QLoRA trainer, eval gate and its caches.
It builds its own parts (bot/trainer/parts.py) and never imports the bot's wiring."""
