"""What the bot keeps: the feedback store and its database (SQLite or PostgreSQL, migrations), the
example store's single-writer server, and the LoRA registry. Import the module you need."""
