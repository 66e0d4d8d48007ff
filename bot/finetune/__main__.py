"""The training pipeline, run as its own process: dataset -> QLoRA -> loss curve -> eval gate -> registry.

    python -m bot.finetune --data-dir DIR --status-file FILE --staging-dir DIR --triggered-by WHO [--config FILE]

Progress goes to the status file (bot/training/status.py), which the serving bot polls. The process
holds the one-run lock (bot/training/runner.py) from before its first status to its end.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from filelock import Timeout

from bot.config import Settings, load_settings
from bot.finetune.pipeline import run_pipeline
from bot.stores.private_dir import create_files_privately
from bot.training.runner import claim_run
from bot.training.status import StatusFile

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.finetune", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--status-file", type=Path, required=True)
    parser.add_argument("--staging-dir", type=Path, required=True)
    parser.add_argument("--triggered-by", required=True)
    parser.add_argument("--config", type=Path, help="a TOML settings file")
    parser.add_argument("--settings", help="the serving bot's settings as JSON: a file, or - for stdin (no secrets)")
    args = parser.parse_args(argv)
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")  # chromadb
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download: the base model is local
    if args.settings:  # exactly what the bot that asked for this run is configured with
        text = sys.stdin.read() if args.settings == "-" else Path(args.settings).read_text()
        settings = Settings.model_validate_json(text)
    else:
        settings = load_settings(args.config, data_dir=str(args.data_dir))
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        lock = claim_run(settings.data_dir)
    except Timeout:  # the status file is that run's: leave it alone
        log.error("another training run is going on %s; this one does not start", settings.data_dir)
        return 1
    try:
        status = StatusFile(args.status_file)
        status.update(phase="loading")  # names this process: its starter waits for it (bot.training.runner)
        manifest = run_pipeline(settings, args.staging_dir, status, args.triggered_by)
    except Exception:
        log.exception("training failed; the LoRA serving before keeps serving")
        return 1
    finally:
        lock.release()
    log.info("%s", manifest["reason"])
    return 0


if __name__ == "__main__":
    create_files_privately()  # here, not in main(): tests call main() inside pytest's process
    sys.exit(main())
