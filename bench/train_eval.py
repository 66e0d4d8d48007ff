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

from bot.config import load_settings  # noqa: E402
from bot.core import Core  # noqa: E402
from bot.evaluation import ALONE, CONVERSATION_SEED, EvalReport, core_answerer, evaluate_file  # noqa: E402
from bot.stores.examples import parse_examples_file  # noqa: E402
from bot.training.dataset import REGRESSION_FILE  # noqa: E402
from bot.training.status import TrainingStatus  # noqa: E402
from bot.types import ConversationKey  # noqa: E402
from bot.wiring import build_core  # noqa: E402

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


def run_eval(
    core: Core, path: Path, label: str, downvote_misses: bool = False, reset_every: int | None = ALONE
) -> EvalReport:
    """Ask every question of `path`, alone (as `bot eval`) or in one conversation (`reset_every=0`,
    as `bot eval --conversation`); with `downvote_misses`, a reviewer gives each wrong reply a 👎
    (which KTO trains against: `tuning.use_kto`)."""
    started = time.monotonic()
    exchanges: dict[str, str] = {}

    def progress(done: int, total: int) -> None:
        print(f"\r  {label}: {done}/{total}", end="", file=sys.stderr, flush=True)

    answer = core_answerer(core, label.replace(" ", "-"), lambda q, reply: exchanges.__setitem__(q, reply.exchange_id))
    order = None if reset_every is ALONE else CONVERSATION_SEED
    report = evaluate_file(answer, path, progress, reset_every, order)
    if downvote_misses:
        for miss in report.misses:
            core.rules.vote(exchanges[miss["question"]], "bench", "reviewer", -1)
    extra = f", follow-ups {report.followup_hits}/{report.followup_total}" if report.followup_total else ""
    print(
        f"\n{label}: accuracy {report.accuracy:.1%} ({report.hits}/{report.total}){extra}, "
        f"{report.repeats} repeated replies, in {time.monotonic() - started:.0f} s",
        flush=True,
    )
    return report


def eval_both_ways(
    core: Core, files: dict[str, Path], stage: str, downvote_misses: bool = False, show_misses: bool = False
) -> dict[str, Any]:
    """Each file alone and as one conversation (60 questions or so, no reset, in the shuffled order
    `bot eval --conversation` uses): accuracy, repeated replies and follow-ups of each."""
    out: dict[str, Any] = {}
    for name, path in files.items():
        for mode, reset_every in (("alone", ALONE), ("conversation", 0)):
            report = run_eval(core, path, f"{stage} {name} {mode}", downvote_misses and mode == "alone", reset_every)
            for miss in report.misses if show_misses else []:
                print(f"  miss {miss['question']!r} -> {miss['reply'][:120]!r}")
            out[f"{name} {mode}"] = {
                "accuracy": report.accuracy,
                "hits": report.hits,
                "total": report.total,
                "repeats": report.repeats,
                "followup_hits": report.followup_hits,
                "followup_total": report.followup_total,
            }
    return out


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


def eval_files(eval_file: Path, general: bool) -> dict[str, Path]:
    """The set's paraphrases, its follow-up pairs when it has them (<set>_followups.jsonl) and, with
    `general`, the general questions of the regression set."""
    files = {"facts": eval_file}
    followups = eval_file.with_name(eval_file.name.replace("_eval", "_followups"))
    if followups != eval_file and followups.exists():
        files["follow-ups"] = followups
    if general:
        files["general"] = REGRESSION_FILE
    return files


def run_set(examples: Path, eval_file: Path, overrides: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """One fact set from a clean data directory: bare, examples only, retrain (with its gate), after;
    each eval alone and in one conversation."""
    results: dict[str, Any] = {"set": eval_file.name.removesuffix("_eval.jsonl"), "settings": overrides}
    files = eval_files(eval_file, general=not args.skip_general)
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
            results["examples_only"] = eval_both_ways(core, files, "2 examples only", args.downvote_misses)

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
        results["swap_s"] = core.generation.engine.loras.last_swap_s
        results["after_training"] = eval_both_ways(core, files, "3 after training", show_misses=args.show_misses)
        if args.again:  # the next retrain: compared with the LoRA serving now, base replies kept
            again, again_manifest = retrain(core, data_dir)
            results["again"] = {"pipeline_s": pipeline_s(again), "promoted": again.promoted,
                                "timings": again_manifest["timings"]}  # fmt: skip
        if args.show_misses:
            for miss in manifest["eval"]["candidate"]["regression_misses"]:
                print(f"  gate regression miss {miss['question']!r} -> {miss['reply'][:120]!r}")
        core.generation.close()
    return results


def print_tables(all_results: list[dict[str, Any]]) -> None:
    """One row per set and eval file: examples only and after the retrain, alone and in conversation."""
    print(
        "\n| set | questions | bare | examples only: alone | in conversation (repeats) | after retrain: alone "
        "| in conversation (repeats) |"
    )
    print("|" + " --- |" * 7)
    for r in all_results:
        for name in ("facts", "follow-ups", "general"):
            after = r["after_training"]
            if f"{name} alone" not in after:
                continue
            before = r.get("examples_only", {})
            print(f"| {r['set']} | {name} ({after[f'{name} alone']['total']}) | "
                  f"{_pct(r.get('base')) if name == 'facts' else '-'} | {_cell(before.get(f'{name} alone'))} | "
                  f"{_cell(before.get(f'{name} conversation'), True)} | {_cell(after[f'{name} alone'])} | "
                  f"{_cell(after[f'{name} conversation'], True)} |")  # fmt: skip
    print(
        "\n| set | promoted | held-out recall | regression | rows | steps | load s | dataset s | train s | gate s "
        "| retrain s | next retrain s |"
    )
    print("|" + " --- |" * 12)
    for r in all_results:
        gate, t = r["gate"], r["timings"]
        print(
            f"| {r['set']} | {'yes' if r['promoted'] else 'no'} | {gate['baseline']['heldout_recall']} -> "
            f"{gate['candidate']['heldout_recall']} | {gate['baseline']['regression_hits']} -> "
            f"{gate['candidate']['regression_hits']}/{gate['candidate']['regression_total']} | "
            f"{r['dataset']['rows']} | {r['steps']} | {t.get('load_s', 0):.0f} | {t.get('dataset_s', 0):.0f} | "
            f"{t['train_s']:.0f} | {t.get('gate_s', 0):.0f} | {r['pipeline_s']:.0f} | "
            f"{r['again']['pipeline_s'] if 'again' in r else '-'} |"
        )


def _cell(result: dict[str, Any] | None, repeats: bool = False) -> str:
    if result is None:
        return "-"
    text = f"{result['accuracy']:.1%}"
    if result["followup_total"]:
        text += f" (follow-ups {result['followup_hits']}/{result['followup_total']})"
    return f"{text} ({result['repeats']})" if repeats else text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["acme", "northline", "library"], help="fact sets in bench/data")
    parser.add_argument("--examples", type=Path, help="an examples file instead of --sets (with --eval)")
    parser.add_argument("--eval", type=Path, help="an eval file instead of --sets (with --examples)")
    parser.add_argument("--skip-base", action="store_true", help="skip the bare-model eval (step 1)")
    parser.add_argument("--skip-examples", action="store_true", help="skip the examples-only eval (step 2)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a setting, e.g. "
                        "training.epochs=6 or tuning.answer_bias=4 (repeatable)")  # fmt: skip
    parser.add_argument("--model-cache", type=Path, default=REPO / ".cache" / "models")
    parser.add_argument("--show-misses", action="store_true")
    parser.add_argument("--skip-general", action="store_true", help="skip the general questions alone and in "
                        "conversation (the gate still asks them alone)")  # fmt: skip
    parser.add_argument("--again", action="store_true", help="then a second retrain, timed (what later runs cost)")
    parser.add_argument("--downvote-misses", action="store_true", help="👎 every wrong examples-only reply "
                        "(the undesirable rows of tuning.use_kto=true)")  # fmt: skip
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
    print_tables(all_results)
    print(json.dumps(all_results))
    return 0


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


if __name__ == "__main__":
    sys.exit(main())
