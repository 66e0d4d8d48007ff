"""`feedback export`: the stores' feedback as JSONL that TRL loads directly, rendered by the training
rows' own builder (bot/training/dataset.py), written atomically; from chat, only as a new file under
the data directory's exports folder."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.config import Settings
from bot.training.dataset import build_training_data
from bot.types import UserError

if TYPE_CHECKING:
    from bot.stores.examples import ExampleStore
    from bot.stores.feedback import FeedbackStore

EXPORTS_DIR = "exports"  # under the data directory: where `feedback export` from chat writes


def kto_path(path: Path) -> Path:
    """Where the KTO rows go beside an SFT export: data.jsonl -> data.kto.jsonl."""
    return path.with_name(f"{path.stem}.kto{path.suffix or '.jsonl'}")


def votes_path(path: Path) -> Path:
    """Where the votes go beside an SFT export, with their reasons: data.jsonl -> data.votes.jsonl."""
    return path.with_name(f"{path.stem}.votes{path.suffix or '.jsonl'}")


def chat_export_path(data_dir: Path, name: str) -> Path:
    """Where `feedback export NAME` from a chat platform writes: a new file under <data_dir>/exports/.

    Chat never names a path outside that folder nor replaces a file, so neither a typo nor a stolen
    admin account can overwrite the bot's own stores or anything else the bot can write. The SFT
    file and its KTO and votes siblings are all checked. Refusals change nothing (the folder is made last).
    """
    given = Path(name)
    if given.is_absolute():
        raise UserError(f"{name!r} is a full path; from chat, give a file name such as feedback.jsonl")
    if ".." in given.parts:
        raise UserError(f"{name!r} leaves the exports folder (`..`); give a file name such as feedback.jsonl")
    if given.name in ("", "."):
        raise UserError("give a file name such as feedback.jsonl")
    folder = data_dir / EXPORTS_DIR
    root = folder.resolve()
    target = folder / given
    for path in (target, kto_path(target), votes_path(target)):
        if not path.resolve().is_relative_to(root):  # a symbolic link inside the folder leading out
            raise UserError(f"{name!r} leads outside the exports folder; choose another name")
        if os.path.lexists(path):
            raise UserError(f"{path.relative_to(folder)} already exists in the exports folder; choose a new name")
    folder.mkdir(parents=True, exist_ok=True)
    return target


def export_feedback(settings: Settings, examples: ExampleStore, store: FeedbackStore, path: Path) -> dict[str, int]:
    """Write the feedback as JSONL that TRL loads directly; returns {"sft": n, "kto": m}.

    `path` gets SFT rows (conversational prompt/completion, in the serving layout); the file beside
    it named by `kto_path` gets KTO rows (prompt/completion/label: good rows true, downvoted false), and
    the one named by `votes_path` every voted reply with its score and the 👎 reasons (what reviewers
    filter on; an unsafe-flagged one is in no training row). All are written to temporary files and
    renamed into place, so a failure leaves nothing half-written.
    """
    # Everything the stores hold and nothing made up: no held-out split, no replay, no synthetic
    # phrasings, downvotes included.
    everything = settings.tuning.model_copy(
        update={"holdout_fraction": 0, "replay_size": 0, "paraphrases": 0, "use_kto": True}
    )
    data = build_training_data(settings.model_copy(update={"tuning": everything}), examples, store)
    kto = [r.as_trl(with_label=True) for r in data.train + data.undesirable]
    voted = [
        {"exchange_id": e.id, "question": e.user_text, "reply": e.reply, "score": score,
         "reasons": store.reasons(e.id), "lora_version": e.lora_version, "scope": e.scope}
        for e, score in store.scored_exchanges()
    ]  # fmt: skip
    sft = [r.as_trl(with_label=False) for r in data.train]
    _write_jsonl_atomically({path: sft, kto_path(path): kto, votes_path(path): voted})
    return {"sft": len(data.train), "kto": len(kto), "votes": len(voted), "left_out": len(data.left_out)}


def _write_jsonl_atomically(files: dict[Path, list[dict[str, Any]]]) -> None:
    staged: list[tuple[str, Path]] = []
    try:
        for target, rows in files.items():
            target = Path(target)
            if target.is_dir():
                raise UserError(f"{target} is a directory; give a file name such as feedback.jsonl")
            if target.parent.exists() and not target.parent.is_dir():
                raise UserError(f"cannot write {target}: {target.parent} is not a folder")
            if not target.parent.is_dir():
                raise UserError(f"cannot write {target}: the folder {target.parent} does not exist")
            try:
                handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            except OSError as exc:
                raise UserError(f"cannot write {target}: {exc.strerror}") from None
            staged.append((temp, target))
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                for row in rows:
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
        for temp, target in staged:
            try:
                os.replace(temp, target)
            except OSError as exc:
                raise UserError(f"cannot write {target}: {exc.strerror}") from None
    finally:
        for temp, _ in staged:
            if os.path.exists(temp):
                os.unlink(temp)
