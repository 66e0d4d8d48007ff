"""Training data, export, evaluation and the gate on fakes; one tiny real QLoRA run (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.evaluation import evaluate_file, key_token_recall, load_eval_file
from bot.finetune.gate import GateScores, decide
from bot.training.dataset import (
    GENERAL_FILE,
    REGRESSION_FILE,
    build_training_data,
    load_general,
    split_holdout,
    tokenize_row,
)
from bot.training.export import export_feedback, kto_path
from bot.types import LOCAL_SCOPE, ConversationKey, Message, UserError
from tests.conftest import MODEL_CACHE, REPO, MakeCore, tuned
from tests.fakes import FakeTokenizer

FACTS = [
    ("How long is the reset link valid?", "The reset link expires after 30 minutes."),
    ("What is the refund window?", "You can get a refund within 14 days."),
    ("Which regions do you run in?", "Frankfurt, Oregon and Singapore."),
    ("What is the support email?", "Write to help@acme.example."),
]
CONV = ConversationKey("console", "test")


def teach_all(core, facts=FACTS) -> None:
    for question, answer in facts:
        core.rules.teach("console", "local", question, answer)


def no_holdout(core, **tuning) -> None:
    core.settings = tuned(core.settings, **{"holdout_fraction": 0.0, "paraphrases": 0, **tuning})


# evaluation ------------------------------------------------------------------------------------


def test_evaluate_file_counts_case_insensitive_hits_and_lists_misses(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    rows = [
        {"question": "capital of France?", "expect_any": ["Paris"]},
        {"question": "2+2?", "expect_any": ["4", "four"]},
        {"question": "color of snow?", "expect_any": ["white"]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    replies = {"capital of France?": "It is PARIS.", "2+2?": "Four, of course", "color of snow?": "blue"}
    report = evaluate_file(lambda _conversation, q: replies[q], path)
    assert (report.hits, report.total) == (2, 3)
    assert report.accuracy == pytest.approx(2 / 3)
    out = report.to_json()
    assert out["misses"] == [{"question": "color of snow?", "reply": "blue", "expected": ["white"]}]
    assert json.loads(json.dumps(out))["accuracy"] == pytest.approx(0.6667)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 2: not valid JSON"),
        ('{"question": "q"}', 'line 2: "expect_any"'),
        ('{"question": "", "expect_any": ["x"]}', "line 2: needs a non-empty string"),
        ('{"question": "q", "expect_any": []}', 'line 2: "expect_any"'),
    ],
)
def test_malformed_eval_file_names_the_line_and_asks_nothing(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "eval.jsonl"
    path.write_text(json.dumps({"question": "ok?", "expect_any": ["ok"]}) + "\n" + line + "\n")
    asked: list[str] = []
    with pytest.raises(UserError, match=message):
        evaluate_file(lambda _conversation, q: asked.append(q) or "", path)
    assert asked == []  # the whole file is checked before the first question


def test_shipped_sets_are_well_formed_and_disjoint() -> None:
    regression = {item.question for item in load_eval_file(REGRESSION_FILE)}
    replay = {pair.question for pair in load_general(GENERAL_FILE)}
    assert len(regression) >= 10 and len(replay) >= 20
    assert not regression & replay  # training on the regression questions would hide forgetting


# dataset ---------------------------------------------------------------------------------------


def test_rows_are_rendered_exactly_as_serving_with_loss_on_the_answer_only(make_core: MakeCore) -> None:
    core = make_core()
    teach_all(core)
    no_holdout(core, replay_size=0)
    question, answer = FACTS[0]
    core.answer(Message(CONV, "u", question))
    served_ids = core.generation.engine.calls[-1]  # what the model got at serving time

    data = build_training_data(core.settings, core.examples, core.store)
    row = next(r for r in data.train if r.messages[-1]["content"] == question)
    ids = tokenize_row(FakeTokenizer(), row, core.settings)
    cut = ids["completion_mask"].index(1)
    assert ids["input_ids"][:cut] == served_ids  # the same prompt, token for token
    assert set(ids["completion_mask"][cut:]) == {1}
    tokenizer = FakeTokenizer()
    expected_answer = tokenizer(answer, split_special_tokens=True)["input_ids"] + tokenizer("<|im_end|>")["input_ids"]
    assert ids["input_ids"][cut:] == expected_answer  # the answer and its end of turn, nothing else
    # The right example is in the context, first, as the verified answer: the turn before the question.
    assert row.context is not None and row.context[0].input == question
    assert row.messages[-3:-1] == [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def test_examples_are_prior_turns_the_strongest_nearest(make_core: MakeCore) -> None:
    core = make_core()
    teach_all(core)
    no_holdout(core, replay_size=0)
    row = build_training_data(core.settings, core.examples, core.store).train[0]
    roles = [m["role"] for m in row.messages]
    assert roles[0] == "system" and roles[-1] == "user" and "assistant" in roles
    assert row.messages[-2] == {"role": "assistant", "content": row.completion}  # strongest nearest


def test_prompt_is_fitted_to_max_seq_len_by_dropping_examples(make_core: MakeCore) -> None:
    core = make_core()
    teach_all(core, [(f"question {i} about the refund window?", "word " * 40) for i in range(4)])
    no_holdout(core, replay_size=0, max_seq_len=120)
    for row in build_training_data(core.settings, core.examples, core.store).train:
        ids = tokenize_row(FakeTokenizer(), row, core.settings)
        assert len(ids["input_ids"]) <= 120
        assert sum(ids["completion_mask"]) == 41  # the answer survives whole; context is what gives way


def test_dedup_newest_answer_wins_and_counts(make_core: MakeCore) -> None:
    core = make_core()
    core.rules.teach("console", "local", "What is the refund window?", "7 days.")
    core.rules.teach("console", "local", "What is the  refund window?", "You can get a refund within 14 days.")
    no_holdout(core, replay_size=0)
    data = build_training_data(core.settings, core.examples, core.store)
    assert [r.completion for r in data.train] == ["You can get a refund within 14 days."]
    assert data.counts["duplicates_removed"] == 1
    # The replaced answer must not sit in the context contradicting the target.
    assert all("7 days" not in m["content"] for m in data.train[0].messages)


def test_holdout_and_replay_are_seeded_and_disjoint(make_core: MakeCore) -> None:
    core = make_core(tuning__lora_for="all")  # every replay row kept
    teach_all(core)
    first = build_training_data(core.settings, core.examples, core.store)
    again = build_training_data(core.settings, core.examples, core.store)
    assert first.fingerprint == again.fingerprint
    assert first.counts["heldout"] == 1 and first.counts["replay"] == core.settings.tuning.replay_size
    held = {p.question for p in first.heldout}
    trained = {r.messages[-1]["content"] for r in first.train}
    assert held and not held & trained
    train, held_out = split_holdout(list(range(3)), 0.9, seed=1)  # type: ignore[arg-type]
    assert (len(train), len(held_out)) == (1, 2)  # never everything held out


def test_replay_rows_meet_an_unrelated_example_when_the_lora_writes_only_such_replies(make_core: MakeCore) -> None:
    """With lora_for = "examples" the base model answers a prompt without an example, so a replay row
    without one would teach the LoRA nothing: it gets the nearest example, below the floor, instead,
    as a general question that retrieves an unrelated example meets it."""
    every = make_core(tuning__lora_for="all")
    teach_all(every)
    some = tuned(every.settings, lora_for="examples")
    all_rows = build_training_data(every.settings, every.examples, every.store).train
    kept = build_training_data(some, every.examples, every.store).train
    replay = [r for r in all_rows if r.source == "replay"]
    assert len(replay) == every.settings.tuning.replay_size and any(not r.context for r in replay)
    kept_replay = [r for r in kept if r.source == "replay"]
    assert len(kept_replay) == len(replay) and all(len(r.context) >= 1 for r in kept_replay)
    assert {r.question for r in kept_replay} == {r.question for r in replay}
    for before, after in zip(replay, kept_replay, strict=True):
        assert after.context == (before.context or after.context[:1])  # served context kept, else one
    assert [r for r in kept if r.source != "replay"] == [r for r in all_rows if r.source != "replay"]


def test_downvoted_replies_become_undesirable_rows_only_with_kto(make_core: MakeCore) -> None:
    core = make_core()
    teach_all(core)
    reply = core.answer(Message(CONV, "u", "Tell me the refund window", scope=LOCAL_SCOPE))  # as the terminal asks
    core.rules.vote(reply.exchange_id, "console", "u", -1)
    no_holdout(core, replay_size=0)
    assert build_training_data(core.settings, core.examples, core.store).undesirable == []
    no_holdout(core, replay_size=0, use_kto=True)
    bad = build_training_data(core.settings, core.examples, core.store).undesirable
    assert [(r.completion, r.desirable, r.source) for r in bad] == [(reply.text, False, "downvote")]
    assert bad[0].messages == core.store.exchange(reply.exchange_id).prompt  # as it was served


# export ----------------------------------------------------------------------------------------


def test_export_writes_trl_readable_sft_and_kto_files(make_core: MakeCore, tmp_path: Path) -> None:
    from datasets import load_dataset
    from trl.data_utils import is_conversational

    core = make_core()
    teach_all(core)
    reply = core.answer(Message(CONV, "u", "Tell me the refund window", scope=LOCAL_SCOPE))  # as the terminal asks
    core.rules.vote(reply.exchange_id, "console", "u", -1)
    path = tmp_path / "feedback.jsonl"
    counts = export_feedback(core.settings, core.examples, core.store, path)
    assert counts == {"sft": len(FACTS), "kto": len(FACTS) + 1, "votes": 1, "left_out": 0}

    sft = load_dataset("json", data_files=str(path), split="train")
    assert sft.column_names == ["prompt", "completion"] and len(sft) == len(FACTS)
    assert is_conversational(sft[0]) and sft[0]["completion"][0]["role"] == "assistant"
    assert {r["completion"][0]["content"] for r in sft} == {a for _, a in FACTS}
    kto = load_dataset("json", data_files=str(kto_path(path)), split="train")
    assert sorted(kto.column_names) == ["completion", "label", "prompt"]
    assert sorted(kto["label"]) == [False] + [True] * len(FACTS)


def test_export_errors_are_clear_and_leave_nothing(make_core: MakeCore, tmp_path: Path) -> None:
    core = make_core()
    teach_all(core)
    with pytest.raises(UserError, match="is a directory"):
        export_feedback(core.settings, core.examples, core.store, tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        export_feedback(core.settings, core.examples, core.store, tmp_path / "missing" / "out.jsonl")
    with pytest.raises(UserError, match="is not a folder"):
        export_feedback(core.settings, core.examples, core.store, tmp_path / "data0" / "feedback.sqlite3" / "out.jsonl")
    with pytest.raises(UserError, match="cannot write"):  # /proc takes no new files, even from root
        export_feedback(core.settings, core.examples, core.store, Path("/proc/bot-export-test.jsonl"))
    # No output and no temporary file anywhere: only the core's data directory.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data0"]
    assert not [p for p in (tmp_path / "data0").iterdir() if p.suffix in (".jsonl", ".tmp")]


def test_export_through_the_admin_command(make_core: MakeCore, tmp_path: Path) -> None:
    core = make_core()
    teach_all(core)
    path = tmp_path / "out.jsonl"
    result = core.command("console", "local", f"feedback export {path}", CONV)
    assert result.ok, result.text
    assert len(path.read_text().splitlines()) == len(FACTS)


# the gate --------------------------------------------------------------------------------------


def test_key_token_recall_rewards_facts_not_phrasing() -> None:
    reference = "The link expires after 30 minutes."
    assert key_token_recall("Your link expires after 30 minutes!", reference) == 1.0
    assert key_token_recall("It expires after 10 minutes.", reference) < 1.0
    assert key_token_recall("I don't know.", reference) == 0.0


def _scores(heldout: float | None, hits: int, total: int = 10) -> GateScores:
    from bot.evaluation import EvalReport

    return GateScores(heldout, hits / total, [], EvalReport(hits, total, []))


def test_gate_promotes_only_when_no_worse_within_margins(make_core: MakeCore) -> None:
    settings = make_core().settings
    assert decide(_scores(0.8, 9), _scores(0.5, 9), settings)[0]
    promote, reason = decide(_scores(0.8, 8), _scores(0.5, 9), settings)
    assert not promote and "regression 8/10 vs 9/10" in reason
    promote, reason = decide(_scores(0.4, 9), _scores(0.5, 9), settings)
    assert not promote and "held-out recall 40% vs 50%" in reason
    lenient = tuned(settings, gate_regression_margin=0.1)
    assert decide(_scores(0.8, 8), _scores(0.5, 9), lenient)[0]
    assert decide(_scores(None, 9), _scores(None, 9), settings)[0]


# a real tiny run -------------------------------------------------------------------------------


@pytest.mark.slow
def test_tiny_real_training_run_commits_a_loadable_lora(tmp_path: Path) -> None:
    """`python -m bot.finetune` on the default model: a few steps, a loss curve, a status file, a version."""
    from bot.config import load_settings
    from bot.generation.model_files import prepare_model
    from bot.stores.lora_registry import LoraRegistry
    from bot.stores.opening import build_examples
    from bot.training.runner import training_dir

    data_dir = tmp_path / "data"
    config = tmp_path / "bot.toml"
    config.write_text(
        f'model_cache = "{MODEL_CACHE}"\nmax_new_tokens = 12\n'
        "[training]\nepochs = 1\n[tuning]\nreplay_size = 2\nbatch_size = 2\nholdout_fraction = 0.34\nparaphrases = 1\n"
    )
    settings = load_settings(config, env={}, data_dir=str(data_dir))
    examples = build_examples(settings)
    for question, answer in FACTS[:3]:
        examples.add(question, answer, "good", "taught")
    del examples
    registry = LoraRegistry.open(settings, prepare_model(settings).fingerprint)
    staging = registry.new_staging()
    status_file = training_dir(data_dir) / "status.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    run = subprocess.run(
        [sys.executable, "-m", "bot.finetune", "--data-dir", str(data_dir), "--status-file", str(status_file),
         "--staging-dir", str(staging), "--triggered-by", "console:local", "--config", str(config)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    status = json.loads(status_file.read_text())
    # 2 examples, 1 other phrasing each, and the 2 replay questions beside the nearest (unrelated)
    # example, as a general question that retrieves one meets it (lora_for = "examples": the LoRA
    # writes only such replies): 6 rows, batch 2, 1 epoch.
    assert status["phase"] == "done" and status["total_steps"] == 3 and status["step"] == 3
    manifest = status["manifest"]
    assert [p["step"] for p in manifest["losses"]] == [1, 2, 3]
    counts = manifest["dataset"]["counts"]
    assert counts["heldout"] == 1 and counts["train"] == 2 and counts["paraphrases"] == 2 and counts["replay"] == 2
    assert set(manifest["eval"]) == {"candidate", "baseline"}
    assert manifest["train_dtype"] in {"float32", "bfloat16"}  # what this CPU trained in (tests/test_cpu_training.py)
    assert manifest["eval"]["baseline"]["regression_total"] == len(load_eval_file(REGRESSION_FILE))
    assert status["summary"].startswith(f"LoRA {status['version']}")

    version_dir = registry.path_for(status["version"])
    assert not staging.exists()  # renamed into the version, not copied
    assert (version_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((version_dir / "manifest.json").read_text())["dataset"] == manifest["dataset"]
    assert (registry.active_lora() is not None) == status["promoted"]

    from peft import PeftConfig

    from bot.finetune.qlora import TARGET_MODULES

    lora = PeftConfig.from_pretrained(str(version_dir))
    assert lora.r == settings.training.lora_r and set(lora.target_modules) == set(TARGET_MODULES)


@pytest.mark.slow
def test_kto_trains_on_good_and_downvoted_rows_and_saves_a_lora(tmp_path: Path, real_files) -> None:
    """`tuning.use_kto`: a few KTO steps on the default model through TRL, in the serving layout."""
    from bot.config import load_settings
    from bot.finetune.qlora import train_lora
    from bot.generation.hf_engine import HFEngine
    from bot.training.dataset import Row, TrainingData
    from bot.training.status import StatusFile

    settings = load_settings(env={}, data_dir=str(tmp_path / "data"), model_cache=str(MODEL_CACHE),
                             tuning__batch_size=2, tuning__use_kto=True)  # fmt: skip

    def row(question: str, answer: str, desirable: bool) -> Row:
        return Row([{"role": "user", "content": question}], answer, desirable, "test")

    good = [row(q, a, True) for q, a in FACTS[:3]]
    bad = [row(FACTS[0][0], "I do not know.", False)]
    data = TrainingData(train=good, undesirable=bad, heldout=[], fingerprint="test")
    engine = HFEngine(settings, real_files)  # its own copy: training dequantizes the model it gets
    status = StatusFile(tmp_path / "status.json")
    losses = train_lora(settings, engine.model, engine.tokenizer, data, tmp_path / "lora", status)
    assert losses and all(loss["loss"] == loss["loss"] for loss in losses), "finite losses, one per step"
    assert (tmp_path / "lora" / "adapter_config.json").is_file()
    assert status.current.total_steps == 2  # 4 rows, batch 2, 1 epoch


def test_the_gate_never_answers_on_the_users_vllm_server(monkeypatch, tmp_path: Path) -> None:
    """With BOT_VLLM_URL set, the gate's model is its own (transformers): loading a candidate LoRA
    into the server that serves users would show it to them before the gate decided."""
    import bot.generation.engines as engines
    from bot.finetune.gate import serving_answerer
    from tests.conftest import test_settings

    built: list[tuple[str, str]] = []

    def record(settings, files, lora_source):
        built.append((settings.engine, settings.vllm_url))
        raise RuntimeError("recorded")

    monkeypatch.setattr(engines, "build_engine", record)
    settings = test_settings(tmp_path / "data", vllm_url="http://vllm:8000")
    with pytest.raises(RuntimeError, match="recorded"), serving_answerer(settings, None, None, None):
        pass
    assert built == [("transformers", "")]
