"""Derive the benchmark's real phrasings from CLINC150: a fixed subset of its crowd-written questions.

    python3 bench/clinc_subset.py path/to/data_full.json [--answers FILE] [--out-dir DIR]

Why: our own fact sets were written by the people who tune the bot, and the tuning has fitted them.
CLINC150 (Larson et al., 2019; the public repository clinc/oos-eval, CC-BY-3.0) holds questions
written by crowd workers who never saw our prompts: lowercase, terse, with typos. This script picks
a small, fixed part of it for the intents we wrote answers for in bench/data/clinc_answers.jsonl
(one verified answer per intent for the fictional Northwind Bank & Travel, each with one fact a
right reply must contain), and writes:

- bench/data/clinc_phrasings.jsonl: per intent, from the `train` split, one `teach` phrasing (taught
  at stage A) and USE_PER_INTENT `use` phrasings (asked during the simulated week of use); from the
  `val` split, HELDOUT_PER_INTENT `heldout` phrasings, measured at every stage and never taught,
  voted on or corrected. Lines: {"intent", "role", "question"}.
- bench/data/clinc_oos.jsonl: OOS_COUNT out-of-scope queries from `oos_train` and `oos_val`.
  Lines: {"question"}.

The `test` and `oos_test` splits are never used, as the data set's authors intend, so that a figure
measured on them later still means something: they are dropped while the file is parsed (json has
to scan past them) and no code here looks at them.

The choice is deterministic: each intent draws from its own random.Random seeded with SEED and the
intent's name (a string seed is hashed with SHA-512, so it does not depend on PYTHONHASHSEED), and
adding or removing an intent leaves every other intent's phrasings as they were. CLINC's text is
kept exactly as written. The script refuses, with a message and exit status 2, when the answers
file names an intent CLINC150 lacks, when two facts collide (equal, or one found in another
intent's answer), when an answer lacks its own fact, or when a chosen question already contains the
fact it should be answered with.

The CLINC150 file is not committed. Get `data/data_full.json` from https://github.com/clinc/oos-eval
(this subset was made from its commit 828f809, of 2021-05-31; the script checks the file's SHA-256,
so that another version cannot silently give another subset):

    curl -LO https://raw.githubusercontent.com/clinc/oos-eval/828f8093932c8fe6ca7936c3d2e52903b1c523de/data/data_full.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"
ANSWERS = DATA / "clinc_answers.jsonl"
PHRASINGS_FILE = "clinc_phrasings.jsonl"
OOS_FILE = "clinc_oos.jsonl"
FIELDS = ("intent", "answer", "fact")  # one line of the answers file

SEED = 31  # the issue that asked for this benchmark
USE_PER_INTENT = 4
HELDOUT_PER_INTENT = 2
OOS_COUNT = 60

# The only splits read. `test` and `oos_test` are left out on purpose (see the docstring).
USED_SPLITS = ("train", "val", "oos_train", "oos_val")
SOURCE_COMMIT = "828f8093932c8fe6ca7936c3d2e52903b1c523de"
SOURCE_SHA256 = "36923c3705a59e08fe9c3883d8bc2dd966ef93e22cb78ac41171782a698d56e0"
SOURCE_URL = f"https://raw.githubusercontent.com/clinc/oos-eval/{SOURCE_COMMIT}/data/data_full.json"


class SubsetError(Exception):
    """The inputs cannot give a sound subset; the message says why."""


@dataclass(frozen=True)
class Answer:
    intent: str
    answer: str
    fact: str


def normalized(text: str) -> str:
    """The form two questions are compared in: lowercase, runs of whitespace as one space."""
    return " ".join(text.lower().split())


def load_clinc(path: Path) -> dict[str, list[list[str]]]:
    """The train, val, oos_train and oos_val splits of CLINC150's data_full.json, nothing else."""
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SOURCE_SHA256:
        raise SubsetError(
            f"{path} is not the data_full.json this subset was made from (sha256 {digest}, expected "
            f"{SOURCE_SHA256}); get it from {SOURCE_URL}"
        )

    def keep_used(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # The file's only JSON object is the top level: its test splits are dropped here, before anything
        # can look at them.
        return {key: value for key, value in pairs if key in USED_SPLITS}

    splits: dict[str, list[list[str]]] = json.loads(raw, object_pairs_hook=keep_used)
    missing = [name for name in USED_SPLITS if name not in splits]
    if missing:
        raise SubsetError(f"{path} lacks the split(s) {', '.join(missing)}")
    return splits


def load_answers(path: Path) -> list[Answer]:
    """The verified answers, in file order; refuses malformed lines and repeated intents."""
    answers: list[Answer] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not isinstance(row, dict) or not all(isinstance(row.get(key), str) and row[key] for key in FIELDS):
            raise SubsetError(f"{path}:{number}: each line needs non-empty strings intent, answer and fact")
        answers.append(Answer(intent=row["intent"], answer=row["answer"], fact=row["fact"]))
    repeated = sorted({a.intent for a in answers if sum(b.intent == a.intent for b in answers) > 1})
    if repeated:
        raise SubsetError(f"{path}: more than one answer for {', '.join(repeated)}")
    return answers


def check_facts(answers: list[Answer]) -> None:
    """Each answer states its own fact as written, and no fact is found in another intent's answer (in any case)."""
    problems: list[str] = []
    for a in answers:
        if a.fact not in a.answer:
            problems.append(f"{a.intent}: its answer does not contain its fact {a.fact!r} as written")
        problems += [
            f"{a.intent}: its fact {a.fact!r} is also in the answer for {b.intent}"
            for b in answers
            if b.intent != a.intent and a.fact.lower() in b.answer.lower()
        ]
    if problems:
        raise SubsetError("facts collide:\n  " + "\n  ".join(problems))


def by_intent(rows: Iterable[list[str]]) -> dict[str, list[str]]:
    """Each intent's questions in file order, the first of any that read the same once normalized."""
    grouped: dict[str, list[str]] = {}
    seen: set[tuple[str, str]] = set()
    for text, intent in rows:
        if (intent, normalized(text)) not in seen:
            seen.add((intent, normalized(text)))
            grouped.setdefault(intent, []).append(text)
    return grouped


def draw(rng: random.Random, pool: list[str], count: int, what: str) -> list[str]:
    if len(pool) < count:
        raise SubsetError(f"{what}: {count} wanted, only {len(pool)} to choose from")
    return rng.sample(pool, count)


def choose_phrasings(splits: dict[str, list[list[str]]], answers: list[Answer]) -> list[dict[str, str]]:
    """One teach and USE_PER_INTENT use phrasings from train, HELDOUT_PER_INTENT heldout ones from val."""
    train = by_intent(splits["train"])
    val = by_intent(splits["val"])
    unknown = [a.intent for a in answers if a.intent not in train or a.intent not in val]
    if unknown:
        raise SubsetError(f"CLINC150 has no intent named {', '.join(unknown)}")
    in_train = {normalized(text) for text, _ in splits["train"]}
    rows: list[dict[str, str]] = []
    for a in answers:
        rng = random.Random(f"{SEED}:{a.intent}")
        teach, *use = draw(rng, train[a.intent], 1 + USE_PER_INTENT, f"train phrasings of {a.intent}")
        # A held-out question must never be one that is taught or asked in use, even spelled otherwise.
        unseen = [text for text in val[a.intent] if normalized(text) not in in_train]
        heldout = draw(rng, unseen, HELDOUT_PER_INTENT, f"val phrasings of {a.intent}")
        rows.append({"intent": a.intent, "role": "teach", "question": teach})
        rows += [{"intent": a.intent, "role": "use", "question": text} for text in use]
        rows += [{"intent": a.intent, "role": "heldout", "question": text} for text in heldout]
    return rows


def check_not_given_away(rows: list[dict[str, str]], answers: list[Answer]) -> None:
    """A chosen question must not already contain the fact its reply is judged on."""
    fact = {a.intent: a.fact.lower() for a in answers}
    given = [f"{row['intent']}: {row['question']!r}" for row in rows if fact[row["intent"]] in row["question"].lower()]
    if given:
        raise SubsetError("questions that contain their own fact:\n  " + "\n  ".join(given))


def choose_oos(splits: dict[str, list[list[str]]], phrasings: list[dict[str, str]]) -> list[dict[str, str]]:
    """OOS_COUNT out-of-scope queries from oos_train and oos_val, none equal to an in-scope question."""
    in_scope = {normalized(text) for name in ("train", "val") for text, _ in splits[name]}
    in_scope |= {normalized(row["question"]) for row in phrasings}
    pool: list[str] = []
    for text, _ in splits["oos_train"] + splits["oos_val"]:
        if normalized(text) not in in_scope:
            in_scope.add(normalized(text))  # also drops repeats within the out-of-scope splits
            pool.append(text)
    return [{"question": text} for text in draw(random.Random(f"{SEED}:oos"), pool, OOS_COUNT, "out-of-scope queries")]


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def derive(clinc: Path, answers_path: Path, out_dir: Path) -> tuple[int, int]:
    """Write the phrasings and out-of-scope files; returns how many lines each got."""
    answers = load_answers(answers_path)
    check_facts(answers)
    splits = load_clinc(clinc)
    phrasings = choose_phrasings(splits, answers)
    check_not_given_away(phrasings, answers)
    oos = choose_oos(splits, phrasings)
    write_jsonl(out_dir / PHRASINGS_FILE, phrasings)
    write_jsonl(out_dir / OOS_FILE, oos)
    return len(phrasings), len(oos)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "clinc", nargs="?", type=Path, help=f"CLINC150's data/data_full.json (not committed; from {SOURCE_URL})"
    )
    parser.add_argument("--answers", type=Path, default=ANSWERS, help="the verified answers (default: %(default)s)")
    parser.add_argument("--out-dir", type=Path, default=DATA, help="where the two files go (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.clinc is None or not args.clinc.is_file():
        where = "no CLINC150 file given" if args.clinc is None else f"{args.clinc} is not a file"
        print(
            f"clinc_subset: {where}. It is not committed: download data/data_full.json from the public "
            f"repository clinc/oos-eval,\n  curl -LO {SOURCE_URL}\nand pass its path.",
            file=sys.stderr,
        )
        return 2
    try:
        phrasings, oos = derive(args.clinc, args.answers, args.out_dir)
    except SubsetError as error:
        print(f"clinc_subset: refused: {error}", file=sys.stderr)
        return 2
    print(f"wrote {phrasings} phrasings to {args.out_dir / PHRASINGS_FILE}, {oos} queries to {args.out_dir / OOS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
