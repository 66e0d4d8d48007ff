from bot.stores.private_dir import create_files_privately

create_files_privately()  # before anything writes: the data directory holds every message

from bot.cli import app  # noqa: E402

app(prog_name="bot")
