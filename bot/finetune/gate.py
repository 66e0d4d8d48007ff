"""The eval gate: a candidate LoRA is promoted only if it is no worse than what serves now.

Both are asked the held-out examples and the regression set through the bot's own serving path.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.evaluation import AnswerFn, EvalReport, core_answerer, evaluate, key_token_recall, load_eval_file
from bot.finetune.base_replies import BaseReplies
from bot.training.dataset import Pair


@dataclass(frozen=True)
class GateScores:
    heldout: float | None  # mean key-token recall; None without held-out examples
    regression: float
    heldout_replies: list[dict[str, Any]]
    regression_report: EvalReport

    def to_json(self) -> dict[str, Any]:
        return {
            "heldout_recall": None if self.heldout is None else round(self.heldout, 4),
            "regression_accuracy": round(self.regression, 4),
            "regression_hits": self.regression_report.hits,
            "regression_total": self.regression_report.total,
            "heldout_replies": self.heldout_replies,
            "regression_misses": self.regression_report.misses,
        }


def gate_scores(
    answer: AnswerFn,
    heldout: list[Pair],
    regression_path: Path,
    progress: Callable[[int, int], None] | None = None,
    regression: EvalReport | None = None,
) -> GateScores:
    """Held-out recall and the regression report; `regression`, when given, is a cached report."""
    regression_items = [] if regression is not None else load_eval_file(regression_path)
    total = len(heldout) + len(regression_items)
    replies: list[dict[str, Any]] = []
    for done, pair in enumerate(heldout, start=1):
        reply = answer(uuid.uuid4().hex, pair.question)  # each question alone, whoever asked it before
        replies.append({"question": pair.question, "reference": pair.answer, "reply": reply,
                        "recall": round(key_token_recall(reply, pair.answer), 4)})  # fmt: skip
        if progress:
            progress(done, total)
    report = regression or evaluate(
        answer, regression_items, (lambda d, _t: progress(len(heldout) + d, total)) if progress else None
    )
    mean = sum(r["recall"] for r in replies) / len(replies) if replies else None
    return GateScores(mean, report.accuracy, replies, report)


def decide(candidate: GateScores, baseline: GateScores, settings: Settings) -> tuple[bool, str]:
    """Promote iff the candidate is no worse than the baseline on both checks, within the margins."""
    t = settings.tuning
    problems: list[str] = []
    lines: list[str] = []
    if candidate.heldout is not None and baseline.heldout is not None:
        lines.append(f"held-out recall {candidate.heldout:.0%} vs {baseline.heldout:.0%}")
        if candidate.heldout < baseline.heldout - t.gate_heldout_margin:
            problems.append(f"held-out recall fell below {baseline.heldout - t.gate_heldout_margin:.0%}")
    else:
        lines.append("no held-out examples (too few examples to hold any out)")
    lines.append(
        f"regression {candidate.regression_report.hits}/{candidate.regression_report.total} vs "
        f"{baseline.regression_report.hits}/{baseline.regression_report.total}"
    )
    if candidate.regression < baseline.regression - t.gate_regression_margin:
        problems.append(f"regression accuracy fell below {baseline.regression - t.gate_regression_margin:.0%}")
    numbers = "; ".join(lines)
    if problems:
        return False, f"{', '.join(problems)} ({numbers})"
    return True, f"no worse than the serving model ({numbers})"


# the serving path, for the gate ---------------------------------------------------------------


GATE_MAX_NEW_TOKENS = 48


def gate_settings(settings: Settings) -> Settings:
    """The serving settings, replies cut at GATE_MAX_NEW_TOKENS: the facts the gate looks for come in
    a reply's first sentence, and a general question can make the small model ramble to the limit."""
    return settings.model_copy(update={"max_new_tokens": min(settings.max_new_tokens, GATE_MAX_NEW_TOKENS)})


UseFn = Callable[[tuple[str, Path] | None], None]  # serve this LoRA (name, dir), or None: the base model


def gate_engine(settings: Settings) -> str:
    """The engine the gate answers on: the one that will serve the candidate when it is llama.cpp
    (about 8x faster on a CPU, and it judges what users will get), else transformers (a GPU trainer;
    a vLLM server could not read the candidate's staging directory)."""
    from bot.generation.engines import choose_engine

    return "llama.cpp" if choose_engine(settings) == "llama.cpp" else "transformers"


@contextmanager
def serving_answerer(
    settings: Settings, files: Any, examples: Any, base_replies: Path | None
) -> Iterator[tuple[AnswerFn, UseFn]]:
    """Yields (an AnswerFn, use((version, path) | None)) on a fresh model, on the engine that serves
    (`gate_engine`).

    Answers go through the bot's own Core (retrieval, prompt builder, generation worker), so the
    gate measures exactly what users would get; its exchanges go to a throwaway store. What the
    base model writes is read back from `base_replies` when an earlier run wrote it already (None:
    every reply is generated).
    """
    from bot.finetune.parts import answering_core
    from bot.generation.engines import build_engine
    from bot.stores.feedback import FeedbackStore

    current: list[tuple[str, Path] | None] = [None]
    # Never the vLLM server at BOT_VLLM_URL: it serves users, and a candidate is not theirs to see.
    on_gate_engine = settings.model_copy(update={"engine": gate_engine(settings), "vllm_url": ""})
    engine: Any = build_engine(on_gate_engine, files, lambda: current[0])
    if base_replies is not None:
        engine = BaseReplies(engine, settings, files.fingerprint, base_replies)
    with tempfile.TemporaryDirectory(prefix="gate-") as scratch:
        core = answering_core(settings, engine, examples, FeedbackStore(Path(scratch) / "feedback.sqlite3"))

        answer = core_answerer(core, "gate")  # every scope's examples, as training sees them

        def use(lora: tuple[str, Path] | None) -> None:
            current[0] = lora
            core.generation.request_sync().result(timeout=300)

        try:
            yield answer, use
        finally:
            core.generation.close()
            core.store.close()
            if isinstance(engine, BaseReplies):
                engine.save()
