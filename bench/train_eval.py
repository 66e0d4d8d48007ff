"""End to end on a fresh data directory per fact set: eval the bare model, import examples, eval,
retrain, eval; then a table for every set.

    .venv/bin/python bench/train_eval.py [--sets acme northline] [--skip-base] [--set training.epochs=2 ...]
        [--again] [--downvote-misses] [--show-misses]

It drives the same code as the CLI (`bot eval`, `bot examples import`, `bot retrain`): the real core,
the training pipeline in its own process with its eval gate, the live LoRA swap. Prints each
accuracy as it comes, the table and one JSON line at the end. Sets: bench/data/<name>_{examples,eval}.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bot.app import build_core  # noqa: E402
from bot.config import load_settings  # noqa: E402
from bot.core import Core  # noqa: E402
from bot.evaluation import EvalReport, evaluate_file  # noqa: E402
from bot.retrieval import parse_examples_file  # noqa: E402
from bot.training.status import TrainingStatus  # noqa: E402
from bot.types import ALL_SCOPES, ConversationKey, Message  # noqa: E402

DATA = REPO / "bench" / "data"


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # a bare string such as turns


def write_toml(path: Path, overrides: dict[str, Any]) -> None:
    top = {k: v for k, v in overrides.items() if "." not in k}
    sections: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        if "." in key:
            section, name = key.split(".", 1)
            sections.setdefault(section, {})[name] = value
    lines = [f"{k} = {json.dumps(v)}" for k, v in top.items()]
    for section, values in sections.items():
        lines += [f"[{section}]", *(f"{k} = {json.dumps(v)}" for k, v in values.items())]
    path.write_text("\n".join(lines) + "\n")


def run_eval(core: Core, path: Path, label: str, downvote_misses: bool = False) -> EvalReport:
    """Ask every question of `path`; with `downvote_misses`, a reviewer gives each wrong reply a 👎
    (which KTO trains against: `training.use_kto`)."""
    conversation = ConversationKey("bench", label)
    started = time.monotonic()
    exchanges: dict[str, str] = {}

    def answer(question: str) -> str:
        core.reset(conversation)  # every question stands alone, as in `bot eval`
        reply = core.answer(Message(conversation, "bench", question, scope=ALL_SCOPES))
        exchanges[question] = reply.exchange_id
        return reply.text

    def progress(done: int, total: int) -> None:
        print(f"\r  {label}: {done}/{total}", end="", file=sys.stderr, flush=True)

    report = evaluate_file(answer, path, progress)
    if downvote_misses:
        for miss in report.misses:
            core.vote(exchanges[miss["question"]], "bench", "reviewer", -1)
    print(
        f"\n{label}: accuracy {report.accuracy:.1%} ({report.hits}/{report.total}) "
        f"in {time.monotonic() - started:.0f} s",
        flush=True,
    )
    return report


def retrain(core: Core, data_dir: Path) -> tuple[TrainingStatus, dict[str, Any]]:
    """One `retrain` as an admin starts it (its own process, gate, promotion); its final status and manifest."""
    assert core.trainer is not None
    started = core.trainer.start(triggered_by="bench")
    if not started.ok:
        raise SystemExit(started.message)

    def show(status: TrainingStatus) -> None:
        step = f"{status.step}/{status.total_steps or '?'}"
        loss = f" loss {status.loss:.3f}" if status.loss is not None else ""
        done = f" {status.done}/{status.total}" if status.phase == "evaluating" else ""
        print(f"\r  training: {status.phase} {step}{loss}{done}    ", end="", file=sys.stderr)

    code = core.trainer.wait(poll_s=2.0, on_progress=show)
    status = core.trainer.read_status()
    print(f"\n{core.trainer.result_text(code)}")
    if code != 0 or status is None or status.manifest is None:
        print(core.trainer.log_file.read_text()[-3000:])
        raise SystemExit(1)
    print(f"  timings: {status.manifest['timings']}; dataset: {status.manifest['dataset']['counts']}")
    return status, status.manifest


def pipeline_s(status: TrainingStatus) -> float:
    """The whole run, from the training process's start to its last status."""
    return round(status.updated_at - status.started_at, 1)


def run_set(examples: Path, eval_file: Path, overrides: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """One fact set from a clean data directory: bare, examples only, retrain (with its gate), after."""
    results: dict[str, Any] = {"set": eval_file.name, "settings": overrides}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        data_dir = Path(tmp) / "data"
        config = Path(tmp) / "bot.toml"
        write_toml(config, {"model_cache": str(args.model_cache), "log_level": "WARNING", **overrides})
        settings = load_settings(config, env={}, data_dir=str(data_dir))
        core = build_core(settings, own_data_dir=True)  # the bench owns its temporary data dir

        if not args.skip_base:
            results["base"] = run_eval(core, eval_file, "1 bare model").accuracy
        added = core.examples.upsert(parse_examples_file(examples), source="import")
        print(f"imported {len(added)} examples from {examples.name}")
        if not args.skip_examples:
            results["examples_only"] = run_eval(core, eval_file, "2 examples only", args.downvote_misses).accuracy

        status, manifest = retrain(core, data_dir)
        results.update(
            train_s=manifest["timings"]["train_s"],
            timings=manifest["timings"],
            pipeline_s=pipeline_s(status),
            steps=len(manifest["losses"]),
            first_loss=manifest["losses"][0]["loss"],
            final_loss=manifest["final_loss"],
            dataset=manifest["dataset"]["counts"],
            gate={
                k: {m: v[m] for m in ("heldout_recall", "regression_hits", "regression_total")}
                for k, v in manifest["eval"].items()
            },
            promoted=status.promoted,
            loss_plot=status.loss_plot,
        )
        if args.keep_plot and status.loss_plot:
            shutil.copyfile(status.loss_plot, args.keep_plot)
        # Serve the candidate even when the gate kept it back, to measure what training bought.
        if not status.promoted:
            core.command("console", "local", f"lora use {status.version}", ConversationKey("bench", "admin"))
        core.generation.request_sync().result(timeout=300)
        results["swap_s"] = core.generation.backend.last_swap_s
        report = run_eval(core, eval_file, "3 after training")
        results["after_training"] = report.accuracy
        if args.again:  # the next retrain: compared with the LoRA serving now, base replies kept
            again, again_manifest = retrain(core, data_dir)
            results["again"] = {"pipeline_s": pipeline_s(again), "promoted": again.promoted,
                                "timings": again_manifest["timings"]}  # fmt: skip
        if args.show_misses:
            for miss in report.misses:
                print(f"  miss {miss['question']!r} -> {miss['reply'][:120]!r}")
            for miss in manifest["eval"]["candidate"]["regression_misses"]:
                print(f"  regression miss {miss['question']!r} -> {miss['reply'][:120]!r}")
        core.generation.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["acme", "northline"], help="fact sets in bench/data")
    parser.add_argument("--examples", type=Path, help="an examples file instead of --sets (with --eval)")
    parser.add_argument("--eval", type=Path, help="an eval file instead of --sets (with --examples)")
    parser.add_argument("--skip-base", action="store_true", help="skip the bare-model eval (step 1)")
    parser.add_argument("--skip-examples", action="store_true", help="skip the examples-only eval (step 2)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a setting, e.g. "
                        "training.epochs=6 or example_layout=turns (repeatable)")  # fmt: skip
    parser.add_argument("--model-cache", type=Path, default=REPO / ".cache" / "models")
    parser.add_argument("--show-misses", action="store_true")
    parser.add_argument("--again", action="store_true", help="then a second retrain, timed (what later runs cost)")
    parser.add_argument("--downvote-misses", action="store_true", help="👎 every wrong examples-only reply "
                        "(the undesirable rows of training.use_kto=true)")  # fmt: skip
    parser.add_argument("--keep-plot", type=Path, help="copy the run's loss.png here (the data dir is temporary)")
    args = parser.parse_args()

    overrides = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    if args.examples and args.eval:
        pairs = [(args.examples, args.eval)]
    else:
        pairs = [(DATA / f"{name}_examples.jsonl", DATA / f"{name}_eval.jsonl") for name in args.sets]
    all_results = []
    for examples, eval_file in pairs:
        print(f"== {eval_file.name}", flush=True)
        all_results.append(run_set(examples, eval_file, overrides, args))
    columns = ["set", "bare", "examples only", "after retrain", "promoted", "held-out recall", "regression"]
    columns += ["train s", "retrain s", "next retrain s"]
    print("\n| " + " | ".join(columns) + " |")
    print("|" + " --- |" * len(columns))
    for r in all_results:
        gate = r["gate"]
        print(
            f"| {r['set']} | {_pct(r.get('base'))} | {_pct(r.get('examples_only'))} | {_pct(r['after_training'])} | "
            f"{'yes' if r['promoted'] else 'no'} | {gate['baseline']['heldout_recall']} -> "
            f"{gate['candidate']['heldout_recall']} | {gate['baseline']['regression_hits']} -> "
            f"{gate['candidate']['regression_hits']}/{gate['candidate']['regression_total']} | "
            f"{r['train_s']:.0f} | {r['pipeline_s']:.0f} | {r['again']['pipeline_s'] if 'again' in r else '-'} |"
        )
    print(json.dumps(all_results))
    return 0


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


if __name__ == "__main__":
    sys.exit(main())
