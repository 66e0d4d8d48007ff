"""A deployment's first week, on phrasings real people wrote (the CLINC150 subset in bench/data/clinc_*.jsonl).

    .venv/bin/python bench/usage_loop.py [--intents N] [--use N] [--weeks N] [--skip-retrain] [--plot FILE.png]

Stages, everything through `Core.handle` as a Slack workspace sends it (issue 31):
  A    an admin teaches one phrasing per intent (`teach`); the held-out phrasings are asked, each alone
  use  other phrasings are asked by users: a right reply gets a 👍 button click from someone other than
       the asker, a wrong one an admin's `correct:` reply in its thread
  B    the held-out phrasings again, on examples alone
  C    one retrain with the defaults (its own process, its gate, the live swap); the held-out ones again
With `--weeks N` the use phrasings are shared out over N weeks, each ending in a retrain (C, C2, ...):
from the second on, a retrain continues the serving LoRA on what is new (bot/finetune/continued.py).
At every stage the held-out phrasings are also asked as one conversation, the out-of-scope queries are
asked (a reply that states a taught fact is a false answer), and the general questions of the gate's
regression set. A hit is a reply that contains its intent's fact; "another fact" counts replies that
state a different intent's fact instead. Prints one table and one JSON line; draws the curve.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.train_eval import pipeline_s, retrain  # noqa: E402
from bot.config import load_settings  # noqa: E402
from bot.core import Core  # noqa: E402
from bot.evaluation import CONVERSATION_SEED, core_answerer, evaluate_file  # noqa: E402
from bot.jsonl import read_jsonl  # noqa: E402
from bot.training.dataset import REGRESSION_FILE  # noqa: E402
from bot.types import Answering, CommandResult, ConversationKey, Done, Incoming, Reply, Vote  # noqa: E402
from bot.wiring import build_core  # noqa: E402

DATA = REPO / "bench" / "data"
PLATFORM, WORKSPACE, CHANNEL = "slack", "T1", "C1"  # one workspace, as a deployment's first week
ADMIN, VOTER = "UADMIN", "UVOTER"
ASKERS = tuple(f"U{n}" for n in range(1, 8))  # the workspace's users, in turn


@dataclass(frozen=True)
class Intent:
    name: str
    answer: str
    fact: str
    teach: str
    use: tuple[str, ...]
    heldout: tuple[str, ...]


def load_intents(limit: int | None, use_per_intent: int | None) -> list[Intent]:
    """The subset's intents in file order (the first `limit`), each with its phrasings by role."""
    answers = {row["intent"]: row for row in read_jsonl(DATA / "clinc_answers.jsonl", dict)}
    roles: dict[str, dict[str, list[str]]] = {}
    for row in read_jsonl(DATA / "clinc_phrasings.jsonl", dict):
        roles.setdefault(row["intent"], {}).setdefault(row["role"], []).append(row["question"])
    intents = [
        Intent(
            name,
            a["answer"],
            a["fact"],
            roles[name]["teach"][0],
            tuple(roles[name]["use"][:use_per_intent]),
            tuple(roles[name]["heldout"]),
        )
        for name, a in answers.items()
    ]
    return intents[:limit]


@dataclass
class Chat:
    """The workspace: users ask in threads of one channel, vote with the buttons, admins teach and correct."""

    core: Core
    ids: Iterator[int] = field(default_factory=itertools.count)

    def ask(self, user: str, text: str, thread: str) -> Reply:
        n = next(self.ids)
        outcome = self.core.handle(
            Incoming(
                PLATFORM,
                ConversationKey(PLATFORM, CHANNEL, thread),
                user,
                text,
                workspace=WORKSPACE,
                mentions_bot=True,
                in_thread=bool(thread),
                event_id=f"msg:{n}",
            )
        )
        if not isinstance(outcome, Answering):
            raise RuntimeError(f"{text!r} was not answered: {outcome}")
        for event in outcome.events:
            if isinstance(event, Done):
                self.core.link_message(event.reply.exchange_id, PLATFORM, f"{CHANNEL}:{n}")
                return event.reply
        raise RuntimeError("the answer ended without a reply")

    def teach(self, question: str, answer: str) -> None:
        result = self.core.handle(
            Incoming(
                PLATFORM,
                ConversationKey(PLATFORM, CHANNEL),
                ADMIN,
                workspace=WORKSPACE,
                command="teach",
                command_args={"question": question, "answer": answer},
            )
        )
        if not (isinstance(result, CommandResult) and result.ok):
            raise RuntimeError(f"teach failed: {result}")

    def upvote(self, reply: Reply) -> None:
        self.core.handle(Vote(PLATFORM, reply.exchange_id, VOTER, 1, f"vote:{next(self.ids)}", WORKSPACE))

    def correct(self, thread: str, answer: str) -> None:
        outcome = self.core.handle(
            Incoming(
                PLATFORM,
                ConversationKey(PLATFORM, CHANNEL, thread),
                ADMIN,
                f"{self.core.settings.correction_prefix} {answer}",
                workspace=WORKSPACE,
                in_thread=True,
                event_id=f"msg:{next(self.ids)}",
            )
        )
        if not (isinstance(outcome, CommandResult) and outcome.ok):
            raise RuntimeError(f"the correction was refused: {outcome}")


def facts_in(reply: str, intents: list[Intent]) -> set[str]:
    lowered = reply.lower()
    return {i.name for i in intents if i.fact.lower() in lowered}


def progress(label: str, done: int, total: int) -> None:
    print(f"\r  {label}: {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)


def measure(chat: Chat, intents: list[Intent], oos: list[str], stage: str) -> dict[str, Any]:
    """The held-out phrasings alone and as one conversation, the out-of-scope queries, the general questions."""
    started = time.monotonic()
    heldout = [(i, q) for i in intents for q in i.heldout]
    out: dict[str, Any] = {}
    order = list(heldout)
    random.Random(CONVERSATION_SEED).shuffle(order)
    conversation = f"{stage}-conversation"
    for mode, asked in (("alone", heldout), ("conversation", order)):
        hits = other = 0
        for n, (intent, question) in enumerate(asked, 1):
            # Alone: each in a thread of its own, by the workspace's users in turn; else one user's one thread.
            thread, user = (
                (f"{stage}-{mode}-{n}", ASKERS[n % len(ASKERS)]) if mode == "alone" else (conversation, ASKERS[0])
            )
            stated = facts_in(chat.ask(user, question, thread).text, intents)
            hits += intent.name in stated
            other += bool(stated - {intent.name})
            progress(f"{stage} held-out {mode}", n, len(asked))
        out[mode] = {"hits": hits, "total": len(asked), "accuracy": hits / len(asked), "another_fact": other}
    false = 0
    for n, question in enumerate(oos, 1):
        false += bool(facts_in(chat.ask(ASKERS[n % len(ASKERS)], question, f"{stage}-oos-{n}").text, intents))
        progress(f"{stage} out-of-scope", n, len(oos))
    out["out_of_scope"] = {"false_answers": false, "total": len(oos), "rate": false / len(oos) if oos else 0.0}
    general = evaluate_file(
        core_answerer(chat.core, f"{stage}-general"), REGRESSION_FILE, lambda d, t: progress(f"{stage} general", d, t)
    )
    out["general"] = {"hits": general.hits, "total": general.total}
    out["seconds"] = round(time.monotonic() - started)
    alone, conv = out["alone"], out["conversation"]
    print(
        f"{stage}: alone {alone['accuracy']:.1%} ({alone['hits']}/{alone['total']}, another fact "
        f"{alone['another_fact']}), conversation {conv['accuracy']:.1%}, out-of-scope false "
        f"{false}/{len(oos)}, general {general.hits}/{general.total}, {out['seconds']} s",
        flush=True,
    )
    return out


def use_week(chat: Chat, intents: list[Intent], week: int = 0, weeks: int = 1) -> dict[str, int]:
    """This week's share of the `use` phrasings (every one, over `weeks`), each asked once in an interleaved
    order; right replies upvoted, wrong ones corrected."""
    asked = [(i, q) for i in intents for n, q in enumerate(i.use) if n % weeks == week]
    random.Random(31 + week).shuffle(asked)
    right = corrected = 0
    for n, (intent, question) in enumerate(asked, 1):
        thread = f"use-{week}-{n}"
        reply = chat.ask(ASKERS[n % len(ASKERS)], question, thread)
        if intent.name in facts_in(reply.text, intents):
            chat.upvote(reply)
            right += 1
        else:
            chat.correct(thread, intent.answer)
            corrected += 1
        progress("use", n, len(asked))
    print(f"use: {len(asked)} questions, {right} right and upvoted, {corrected} corrected", flush=True)
    return {"asked": len(asked), "upvoted": right, "corrected": corrected}


STAGES = ("A", "B", "C", "C2", "C3", "C4")
STAGE_NAMES = {"A": "A: taught", "B": "B: after use", "C": "C: a retrain"} | {
    f"C{n}": f"C{n}: week {n}" for n in range(2, 5)
}


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [s for s in STAGES if s in results]
    fig, ax = plt.subplots(figsize=(6, 4))
    for mode, style in (("alone", "o-"), ("conversation", "s--")):
        ax.plot(stages, [100 * results[s][mode]["accuracy"] for s in stages], style, label=f"held-out, {mode}")
    ax.plot(stages, [100 * results[s]["out_of_scope"]["rate"] for s in stages], "x:", label="out-of-scope answered")
    ax.set_ylim(0, 100)
    ax.set_ylabel("%")
    ax.set_xticks(stages, [STAGE_NAMES[s] for s in stages])
    ax.set_title(f"Real phrasings (CLINC150 subset, {results['intents']} intents)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"curve: {path}")


def print_table(results: dict[str, Any]) -> None:
    print("\n| stage | held-out alone | another fact | conversation | out-of-scope answered | general |")
    print("| --- | --- | --- | --- | --- | --- |")
    for stage in STAGES:
        if stage in results:
            r = results[stage]
            print(
                f"| {stage} | {r['alone']['accuracy']:.1%} ({r['alone']['hits']}/{r['alone']['total']}) "
                f"| {r['alone']['another_fact']} | {r['conversation']['accuracy']:.1%} "
                f"| {r['out_of_scope']['false_answers']}/{r['out_of_scope']['total']} "
                f"| {r['general']['hits']}/{r['general']['total']} |"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intents", type=int, default=None, help="the first N intents only (all: 60)")
    parser.add_argument("--use", type=int, default=None, help="use phrasings per intent (all: 4)")
    parser.add_argument("--oos", type=int, default=None, help="out-of-scope queries (all: 60)")
    parser.add_argument("--weeks", type=int, default=1, help="weeks of use, each ending in a retrain (default 1)")
    parser.add_argument("--skip-retrain", action="store_true", help="stop after B")
    parser.add_argument("--model-cache", type=Path, default=REPO / ".cache" / "models")
    parser.add_argument("--plot", type=Path, default=None, help="where to draw the curve (a PNG)")
    args = parser.parse_args()
    intents = load_intents(args.intents, args.use)
    oos = [row["question"] for row in read_jsonl(DATA / "clinc_oos.jsonl", dict)][: args.oos]
    results: dict[str, Any] = {"intents": len(intents), "oos": len(oos)}
    with tempfile.TemporaryDirectory(prefix="bench-usage-") as tmp:
        data_dir = Path(tmp) / "data"
        settings = load_settings(
            env={},
            data_dir=str(data_dir),
            model_cache=str(args.model_cache),
            admins=[f"{PLATFORM}:{ADMIN}"],
            log_level="WARNING",
            slack__allowed_teams=[WORKSPACE],
        )
        core = build_core(settings, own_data_dir=True)
        chat = Chat(core)
        for intent in intents:
            chat.teach(intent.teach, intent.answer)
        results["A"] = measure(chat, intents, oos, "A")
        for week in range(args.weeks):
            stage = "C" if week == 0 else f"C{week + 1}"
            results["use" if week == 0 else f"use{week + 1}"] = use_week(chat, intents, week, args.weeks)
            if week == 0:
                results["B"] = measure(chat, intents, oos, "B")
            if args.skip_retrain:
                break
            status, manifest = retrain(core, data_dir)
            results["retrain" if week == 0 else f"retrain{week + 1}"] = {
                "pipeline_s": pipeline_s(status),
                "promoted": status.promoted,
                "continued_from": manifest.get("continued_from"),
                "timings": manifest["timings"],
                "dataset": manifest["dataset"]["counts"],
            }
            core.generation.request_sync().result(timeout=300)
            results[stage] = measure(chat, intents, oos, stage)
        core.generation.close()
    print_table(results)
    if args.plot:
        plot(results, args.plot)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
