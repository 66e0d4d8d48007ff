"""What the `status` command shows (bot/commands.py runs it): the model and the LoRA serving, the
stores' counts, the retention settings and the last training run, as values (`bot status --json`,
`bot ask --json`'s engine) and as the text a chat shows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.generation.worker import GenerationService
    from bot.stores.examples import ExampleStore
    from bot.stores.feedback import FeedbackStore
    from bot.stores.lora_registry import LoraRegistry
    from bot.training.runner import TrainingRunner


class StatusContext(Protocol):
    """What `status` reads of the core (bot/core.py is one): the parts it reports on. None where a
    process has no such part (the CLI loads no model; a core built for the gate has no registry)."""

    settings: Settings
    generation: GenerationService | None
    examples: ExampleStore
    store: FeedbackStore
    registry: LoraRegistry | None
    trainer: TrainingRunner | None


def status_data(core: StatusContext) -> dict[str, object]:
    """What `status` shows, as values: for `bot status --json` and the text below."""
    data: dict[str, object] = {}
    if core.generation is not None:
        engine = core.generation.engine
        files = engine.files
        data.update(model=files.model_id if files else None, engine=engine.description,
                    lora_serving=engine.loras.version, queued=core.generation.queued())  # fmt: skip
    if core.registry is not None:
        data["lora_active"] = core.registry.active_pointer()
    data.update(examples=core.examples.count(), exchanges=core.store.count_exchanges(),
                pending_corrections=len(core.store.corrections("pending")))  # fmt: skip
    data["retention"] = core.settings.retention.model_dump()
    if core.trainer is not None:
        status = core.trainer.read_status()
        data["training"] = None if status is None else status.model_dump(exclude={"manifest"})
        data["training_text"] = core.trainer.status_text()
    return data


def status_text(core: StatusContext) -> str:
    data = status_data(core)
    lines = []
    if core.generation is not None:
        lines += [
            f"Model: {data['model'] or 'unknown'} ({data['engine'] or '?'})",
            f"LoRA serving: {data['lora_serving'] or 'none (base model)'}",
        ]
    elif "lora_active" in data:  # the CLI: no model here, the registry says what serves
        lines.append(f"LoRA active in the registry: {data['lora_active'] or 'none (base model)'}")
    lines.append(
        f"Examples: {data['examples']}  Exchanges: {data['exchanges']}  "
        f"Pending corrections: {data['pending_corrections']}"
    )
    kept = core.settings.retention
    prompts = f"{kept.prompt_days} days" if kept.prompt_days else "forever"
    lines.append(f"Retention: prompts {prompts}, {kept.keep_candidates} LoRA candidates, "
                 f"{kept.log_backups} earlier train.log(s)")  # fmt: skip
    if core.generation is not None:
        lines.append(f"Queue: {data['queued']} waiting")
    if "training_text" in data:
        lines.append(str(data["training_text"]))
    return "\n".join(lines)
