"""The training process (`python -m bot.finetune`): pipeline, QLoRA trainer, eval gate and its caches.
It builds its own parts (bot/finetune/parts.py) and never imports the bot's wiring."""
