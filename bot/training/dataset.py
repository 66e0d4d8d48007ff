"""Training data from the stores, rendered in the exact layout the bot serves in (`feedback export`
writes the same rows: bot/training/export.py).

Each good example becomes one supervised row: the prompt is what the bot would build for that
question (system prompt, the examples retrieval returns for it, the question) and the loss covers
the answer tokens only. The right example is always in the context, among the retrieved
distractors: training in the serving format taught the prototype to *use* what retrieval hands it
(57-70% against 52% for plain question->answer pairs). Downvoted replies become undesirable rows
for KTO. A fixed, seeded replay sample of general questions keeps general answers from being
forgotten. A seeded share of the good examples is held out for the eval gate.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.config import Settings
from bot.prompt import build_prompt, prompt_messages, tokenize_messages
from bot.training.paraphrase import question_variants
from bot.training.trust import LeftOut, downvote_trains, text_key, training_examples, vouched
from bot.types import ALL_SCOPES, Example, Turn

if TYPE_CHECKING:
    from bot.stores.examples import ExampleStore
    from bot.stores.feedback import FeedbackStore

DATA_DIR = Path(__file__).resolve().parent.parent / "data"  # bot/data
GENERAL_FILE = DATA_DIR / "general.jsonl"  # replay: general questions with short correct answers
REGRESSION_FILE = DATA_DIR / "regression.jsonl"  # the gate's forgetting check; disjoint from replay

SEED = 7  # of the holdout split, the replay sample, the rows' rephrasings and histories, and training
# Half the rows come after earlier exchanges: without such rows a LoRA never saw history (docs/training.md).
HISTORY_SHARE = 0.5
# Retrieval misses in use too: this share of rephrased rows has its own example left out of the prompt.
MISSING_SHARE = 0.15
# A retrain that continues the serving LoRA (bot/finetune/continued.py) trains on the pairs new since it
# trained and replays old ones beside them: half as many as there are new, at least this many.
OLD_REPLAY_SHARE = 0.5
OLD_REPLAY_MIN = 8

Retrieve = Callable[[str], list[Example]]


@dataclass(frozen=True)
class Pair:
    """A question and an answer, with where it came from."""

    question: str
    answer: str
    source: str
    ref: str  # example id or exchange id: provenance for the manifest


@dataclass(frozen=True)
class Row:
    """One rendered training row: chat messages up to the question, and the reply to learn or avoid."""

    messages: list[dict[str, str]]
    completion: str
    desirable: bool
    source: str
    # The examples in the prompt, best first, so that tokenize_row can fit them to the token budget
    # with the serving builder; None for a prompt recorded at serving time (kept as it was).
    context: tuple[Example, ...] | None = None
    history: tuple[Turn, ...] = ()  # earlier exchanges of the conversation, oldest first
    question: str = ""  # the message asked (the last turn of `messages` may carry the examples too)

    def as_trl(self, with_label: bool) -> dict[str, Any]:
        """TRL's conversational prompt/completion format (KTO adds the boolean label)."""
        row: dict[str, Any] = {
            "prompt": self.messages,
            "completion": [{"role": "assistant", "content": self.completion}],
        }
        if with_label:
            row["label"] = self.desirable
        return row


@dataclass
class TrainingData:
    train: list[Row]  # supervised rows: good examples then replay
    undesirable: list[Row]  # for KTO only
    heldout: list[Pair]  # good examples kept out of training, for the gate
    fingerprint: str
    counts: dict[str, int] = field(default_factory=dict)
    left_out: list[LeftOut] = field(default_factory=list)  # good examples that do not train, and why
    examples: list[Pair] = field(default_factory=list)  # the good examples that train (the held-out ones do not)
    trained: list[Pair] = field(default_factory=list)  # those this run's rows answer (all of them, unless continued)
    continued: bool = False  # rows for what is new since the parent LoRA trained, and a replay of the rest


def pair_key(question: str, answer: str) -> str:
    """A question and answer as text (the same up to case and spacing): what a LoRA has learned."""
    return hashlib.sha256(f"{text_key(question)}\x00{text_key(answer)}".encode()).hexdigest()[:16]


def continuation(pairs: Sequence[Pair], seen: frozenset[str]) -> tuple[list[Pair], list[Pair]]:
    """(the pairs new since the parent LoRA trained, a seeded sample of the others to replay beside them)."""
    learned = [pair_key(p.question, p.answer) in seen for p in pairs]
    new = [p for p, known in zip(pairs, learned, strict=True) if not known]
    old = [p for p, known in zip(pairs, learned, strict=True) if known]
    count = min(len(old), max(OLD_REPLAY_MIN, round(len(new) * OLD_REPLAY_SHARE)))
    return new, random.Random(SEED).sample(old, count)


def good_pairs(
    examples: ExampleStore, settings: Settings, store: FeedbackStore | None
) -> tuple[list[Pair], int, list[LeftOut]]:
    """One good example per question, ranked by trust (bot/training/trust.py); returns (pairs,
    duplicates replaced by a newer answer of the same rank, examples left out and why)."""
    good = examples.list(label="good")  # oldest first
    chosen, left_out = training_examples(good, settings, store)
    pairs = [Pair(e.input, e.output, e.source or "import", e.id) for e in chosen]
    pairs.sort(key=lambda p: p.ref)  # independent of insertion order: the same store, the same split
    return pairs, len(good) - len(pairs) - len(left_out), left_out


def bad_pairs(
    examples: ExampleStore, store: FeedbackStore | None, settings: Settings
) -> list[tuple[Pair, list[dict[str, str]] | None]]:
    """Undesirable replies: downvoted exchanges (with the prompt they were served with) and bad examples.

    A downvote trains by the same trust rule as an upvote (bot/training/trust.py: `downvote_trains`),
    and never against an answer somebody trusted gave."""
    found: dict[tuple[str, str], tuple[Pair, list[dict[str, str]] | None]] = {}
    if store is not None:
        trusted = {text_key(e.output) for e in examples.list(label="good") if vouched(e)}
        for exchange, score in store.scored_exchanges():
            if score < 0 and exchange.reply.strip() and downvote_trains(exchange, trusted, settings, store) is None:
                pair = Pair(exchange.user_text, exchange.reply, "downvote", exchange.id)
                found[(text_key(pair.question), text_key(pair.answer))] = (pair, exchange.prompt)
    for example in examples.list(label="bad"):
        key = (text_key(example.input), text_key(example.output))
        found.setdefault(key, (Pair(example.input, example.output, "bad-example", example.id), None))
    return sorted(found.values(), key=lambda item: item[0].ref)


def _has_own(row: Row) -> bool:
    return any(text_key(e.output) == text_key(row.completion) for e in row.context or ())


def load_general(path: Path = GENERAL_FILE) -> list[Pair]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [Pair(r["question"], r["answer"], "replay", f"general:{i}") for i, r in enumerate(rows)]


def split_holdout(pairs: Sequence[Pair], fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """A seeded split; at least one example always stays in training."""
    shuffled = list(pairs)
    random.Random(seed).shuffle(shuffled)
    count = min(round(len(shuffled) * fraction), max(len(shuffled) - 1, 0))
    return shuffled[count:], shuffled[:count]


def context_for(pair: Pair, retrieve: Retrieve, k: int, example: Pair | None = None) -> list[Example]:
    """The examples serving would put in the prompt for this question, with its example among them.

    `example` is the stored example the row answers from (the pair itself unless the pair is another
    phrasing of it). It normally comes back first; if retrieval missed it, it is put first so that
    the answer is always supported by the context, as it is at serving time.
    """
    if k <= 0:
        return []
    source = example or pair
    retrieved = retrieve(pair.question)
    own = [
        e
        for e in retrieved
        if text_key(e.input) == text_key(source.question) and text_key(e.output) == text_key(source.answer)
    ]
    # Another answer to the same question (an older, replaced one) would contradict the target.
    others = [e for e in retrieved if text_key(e.input) != text_key(source.question)]
    if pair.source == "replay" and not own:
        return others[:k]  # general questions are served with whatever retrieval finds, if anything
    mine = own[0] if own else Example(id=source.ref, input=source.question, output=source.answer)
    return [mine, *others][:k]


def paraphrase_rows(pairs: Sequence[Pair], retrieve: Retrieve, settings: Settings) -> list[Row]:
    """`tuning.paraphrases` other phrasings of each example's question, answered with its answer."""
    rows = []
    t = settings.tuning
    for pair in pairs:
        for variant in question_variants(pair.question, t.paraphrases, SEED):
            asked = Pair(variant, pair.answer, "paraphrase", pair.ref)
            context = context_for(asked, retrieve, t.retrieval_k, pair)
            # Some rows answer from what the LoRA learned, beside near misses (MISSING_SHARE).
            others = context[1:]
            if others and random.Random(f"{SEED}:missing:{variant}").random() < MISSING_SHARE:
                context = others
            rows.append(render(asked, context, settings))
    return rows


def render(
    pair: Pair, context: Sequence[Example], settings: Settings, desirable: bool = True, history: Sequence[Turn] = ()
) -> Row:
    messages = prompt_messages(settings.system_prompt, context, history, pair.question)
    return Row(messages, pair.answer, desirable, pair.source, tuple(context), tuple(history), pair.question)


def in_conversations(rows: list[Row], pool: Sequence[Pair], settings: Settings) -> list[Row]:
    """HISTORY_SHARE of the rows asked after 1 to `history_turns` earlier exchanges about other
    things, answered right, as a chat has them (seeded per question). Without such rows a LoRA never
    saw history, and in a conversation the base model copied the last reply it had given."""
    turns = min(settings.tuning.history_turns, 3)
    if turns <= 0:
        return rows
    out = []
    for row in rows:
        rng = random.Random(f"{SEED}:history:{row.question}:{row.completion}")
        others = [p for p in pool if text_key(p.answer) != text_key(row.completion)]
        if row.context is None or not others or rng.random() >= HISTORY_SHARE:
            out.append(row)
            continue
        earlier = [Turn(p.question, p.answer) for p in rng.sample(others, min(len(others), rng.randint(1, turns)))]
        asked = Pair(row.question, row.completion, row.source, "")
        out.append(render(asked, row.context, settings, row.desirable, earlier))
    return out


def prompt_ids(tokenizer: Any, row: Row, settings: Settings, budget: int) -> list[int]:
    """The row's prompt as serving builds it within `budget` tokens (history dropped first, then the
    weakest examples), or a recorded prompt as it was served."""
    if row.context is None:
        return tokenize_messages(tokenizer, row.messages)
    return build_prompt(tokenizer, settings.system_prompt, row.context, row.history, row.question, budget).input_ids


def tokenize_row(tokenizer: Any, row: Row, settings: Settings) -> dict[str, list[int]]:
    """input_ids and completion_mask (1 on the answer and its end-of-turn), fitted to max_seq_len.

    The prompt goes through the same budgeted builder as serving (`prompt_ids`) until prompt and
    answer fit.
    """
    full = [*row.messages, {"role": "assistant", "content": row.completion}]
    answer_ids = _completion_ids(tokenizer, full)
    max_len = settings.tuning.max_seq_len
    budget = min(settings.context_tokens - settings.max_new_tokens, max_len - len(answer_ids))
    prompt = prompt_ids(tokenizer, row, settings, budget)
    ids = (prompt + answer_ids)[-max_len:]
    mask = ([0] * len(prompt) + [1] * len(answer_ids))[-max_len:]
    return {"input_ids": ids, "completion_mask": mask}


def _completion_ids(tokenizer: Any, conversation: list[dict[str, str]]) -> list[int]:
    """The answer's tokens as the chat template renders the assistant turn, end-of-turn included."""
    prompt = tokenize_messages(tokenizer, conversation[:-1], add_generation_prompt=True)
    full = tokenize_messages(tokenizer, conversation, add_generation_prompt=False)
    if full[: len(prompt)] != prompt:
        raise ValueError("the chat template renders the prompt differently once the answer follows it")
    return full[len(prompt) :]


def build_training_data(
    settings: Settings,
    examples: ExampleStore,
    store: FeedbackStore | None,
    retrieve: Retrieve | None = None,
    general_path: Path = GENERAL_FILE,
    replay_answer: Callable[[Row], str] | None = None,
    seen: frozenset[str] | None = None,
) -> TrainingData:
    """Everything a run trains and gates on, deterministic for a given store and settings.

    `replay_answer` gives each replay row its target (bot/finetune/self_replay.py: the base model's own
    words); without it a replay row answers with the written answer. `seen`: the pairs the LoRA this
    run continues has learned (`pair_key`); rows then answer the new pairs and a replay sample of the
    others (`continuation`), or every pair when none is new.
    """
    t = settings.tuning
    nearest: Retrieve = retrieve or (lambda text: [])
    if retrieve is None:

        def retrieve(text: str) -> list[Example]:
            # A LoRA serves everyone, so it trains on every scope's examples (README: the trust model).
            return examples.retrieve(text, t.retrieval_k, t.min_similarity, scope=ALL_SCOPES)

        def nearest(text: str) -> list[Example]:
            return examples.retrieve(text, 1, -1.0, scope=ALL_SCOPES)

    good, duplicates, left_out = good_pairs(examples, settings, store)
    train_pairs, heldout = split_holdout(good, t.holdout_fraction, SEED)
    trained, old_replayed = train_pairs, []
    if seen is not None:
        new, old_replayed = continuation(train_pairs, seen)
        if new:
            trained = new + old_replayed
    continued = trained is not train_pairs
    general = load_general(general_path) if t.replay_size else []
    replay = random.Random(SEED).sample(general, min(t.replay_size, len(general)))
    rows = [render(p, context_for(p, retrieve, t.retrieval_k), settings) for p in trained]
    for pair in replay:
        context = context_for(pair, retrieve, t.retrieval_k)
        if not context and t.lora_for == "examples":
            # The base model writes every reply whose prompt holds no example, so a replay row teaches
            # the LoRA only beside an unrelated example: the nearest one, as a general question that
            # retrieves one meets it (the LoRA must answer it, not copy the example: the regression gate).
            context = nearest(pair.question)
        if context or t.lora_for != "examples":
            rows.append(render(pair, context, settings))
    replay_rows = sum(r.source == "replay" for r in rows)
    if replay_answer is not None:
        rows = [replace(r, completion=replay_answer(r)) if r.source == "replay" else r for r in rows]
    rows += paraphrase_rows(trained, retrieve, settings)
    rows = in_conversations(rows, train_pairs + general, settings)
    undesirable: list[Row] = []
    if t.use_kto:
        for pair, served in bad_pairs(examples, store, settings):
            if served:  # train against the reply in the prompt it was actually produced from
                undesirable.append(Row(served, pair.answer, False, pair.source))
            else:
                context = [e for e in retrieve(pair.question) if text_key(e.input) != text_key(pair.question)]
                undesirable.append(render(pair, context[: t.retrieval_k], settings, desirable=False))
    digest = hashlib.sha256()
    for row in rows + undesirable:
        digest.update(json.dumps([row.messages, row.completion, row.desirable], sort_keys=True).encode())
    digest.update(json.dumps(sorted(p.ref for p in heldout)).encode())
    counts = {
        "good_examples": len(good),
        "duplicates_removed": duplicates,
        "left_out_by_trust": len(left_out),
        "train": len(train_pairs),
        "heldout": len(heldout),
        "trained": len(trained),
        "old_replayed": len(old_replayed) if continued else 0,
        "replay": replay_rows,
        "paraphrases": len(rows) - len(trained) - replay_rows,
        "undesirable": len(undesirable),
        "in_conversation": sum(bool(r.history) for r in rows),
        "without_own_example": sum(r.source == "paraphrase" and not _has_own(r) for r in rows),
        "rows": len(rows),
    }
    return TrainingData(rows, undesirable, heldout, digest.hexdigest()[:16], counts, left_out, train_pairs, trained,
                        continued)  # fmt: skip
