"""CPU speed, side by side in one run: the bot's two CPU engines and plain llama.cpp on the same
model and the same prompt tokens (issue 12). Prints decode tokens/s, time to first token, warm
load, and aggregate tokens/s with 1 and 4 users at once, then the ratios to plain llama.cpp.

    .venv/bin/python bench/cpu_speed.py [--tokens 128] [--runs 3] [--only llama.cpp]
        [--prompt plain|conversation] [--lora]

`--prompt conversation` is the product's usual prompt (issue 24): three retrieved acme examples,
eight earlier turns and the question, with the answer bias of the default settings; it also times
the first token of the conversation's next reply (its history grown by the last exchange, the same
examples retrieved), with and without the start read ahead while the user reads (the bot's
`read_ahead`; plain llama.cpp reads every prompt cold). `--lora`
serves a random rank-16 LoRA on every module the trainer targets, in the bot and in plain llama.cpp.
`--kernel` times llama.cpp's own calls on the bot's context (one token for 1 or 4 replies, a prompt
chunk for 1 or 4 replies) and the 4-user gain they allow: the kernel-level limit of the 4-user figure.

With llama.cpp among the engines, the bot is also timed as users start it: `bot ask --json`, a whole
process each time (embedder, stores, engine), from the timings it prints (issue 35).

The bot's engines run through its whole generation path (the worker, the fair queue, the
decoding rules of the default settings, streaming text): `transformers` (bitsandbytes NF4) and
`llama.cpp` (its batching engine on the default model's GGUF). Plain llama.cpp is
llama-cpp-python's `Llama.generate` on the same GGUF (Q4_1), one user at a time: the reference.
llama-cpp-python comes with `make install EXTRAS=test,llama` (a 9-minute build on 2 cores).
Everything decodes greedily with end-of-text ignored, so every run writes exactly --tokens
tokens. Ratios, not absolutes, are comparable between machines.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bot_ask_speed import bot_ask
from bot.config import load_settings
from bot.finetune.qlora import LORA_ALPHA, TARGET_MODULES
from bot.generation.decoding import favored_tokens
from bot.generation.engine import NO_HINTS, Generated, ReplyHints
from bot.generation.hf_engine import HFEngine
from bot.generation.llama_engine import LlamaCppEngine, serving_gguf
from bot.generation.model_files import default_gguf_path, prepare_model
from bot.generation.worker import GenerationService
from bot.prompt import build_prompt, conversation_start
from bot.stores.examples import parse_examples_file
from bot.types import Example, Turn

ENGINES = ("transformers", "llama.cpp")
RESULT = "RESULT "  # the line a child run's figures come back on
QUESTION = "How do I reset my Acme Cloud password? Explain every step in detail."

ACME = Path(__file__).resolve().parent / "data" / "acme_examples.jsonl"

# One run: (prompt ids, tokens to write) -> (seconds to the first token, seconds in all, tokens written).
Run = Callable[[list[int], int], tuple[float, float, int]]
ReadAhead = Callable[[list[int]], int]  # the bot's read_ahead, waited for: the tokens it holds


class Prompts:
    """The prompts every engine reads (the same ids for all), the answer bias they get, and each
    conversation's next prompt (which starts as its first does). Each user and run opens a
    conversation of its own (its system prompt names it), so no first prompt starts as an earlier one."""

    def __init__(self, tokenizer, settings, tokens: int, kind: str) -> None:
        self.tokenizer, self.settings, self.kind = tokenizer, settings, kind
        self.budget = settings.context_tokens - tokens
        self.favored: tuple[int, ...] = ()
        if kind == "conversation":
            self.rows = parse_examples_file(ACME)
            self.examples = [Example(f"e{n}", row.input, row.output) for n, row in enumerate(self.rows[:3])]
            if settings.tuning.answer_bias:
                self.favored = tuple(favored_tokens(tokenizer, self.examples[0].output))

    def _build(self, conversation: int, turns: list[Turn], text: str) -> list[int]:
        system = f"Conversation {conversation}. {self.settings.system_prompt}"
        examples = self.examples if self.kind == "conversation" else []
        return build_prompt(self.tokenizer, system, examples, turns, text, self.budget).input_ids

    def first(self, conversation: int) -> list[int]:
        if self.kind == "plain":
            return self._build(conversation, [], QUESTION)
        return self._build(conversation, [Turn(r.input, r.output) for r in self.rows[3:11]], QUESTION)

    def _next_turns(self) -> list[Turn]:
        # The last exchange's reply as long as a real one: the best example's answer, which the
        # answer bias leads the model to.
        return [Turn(r.input, r.output) for r in self.rows[3:11]] + [Turn(QUESTION, self.examples[0].output)]

    def next(self, conversation: int) -> list[int] | None:
        """The same conversation one exchange later, its history grown by the last exchange (below the
        `history_turns` cap: at the cap the oldest turn is dropped, and only the system prompt stays
        the same from one prompt to the next)."""
        if self.kind == "plain":
            return None
        return self._build(conversation, self._next_turns(), self.rows[12].input)

    def next_start(self, conversation: int) -> list[int]:
        """What the next prompt starts with, as the bot reads it ahead after a reply."""
        system = f"Conversation {conversation}. {self.settings.system_prompt}"
        start = conversation_start(self.tokenizer, system, self._next_turns())
        return start or []

    @property
    def hints(self) -> ReplyHints:
        return ReplyHints(self.favored, False) if self.favored else NO_HINTS


def random_lora(files, settings, folder: Path) -> Path:
    """A peft LoRA with random weights on the trainer's target modules, saved as training saves it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(files.path, dtype=torch.float32)
    config = LoraConfig(r=settings.training.lora_r, lora_alpha=LORA_ALPHA, target_modules=list(TARGET_MODULES),
                        init_lora_weights=False)  # fmt: skip
    get_peft_model(base, config).save_pretrained(folder)
    return folder


def line(name: str, value: str) -> None:
    print(f"{name:<46} {value}", flush=True)


def bot_path(
    settings, files, engine_name: str, lora: Path | None, hints: ReplyHints
) -> tuple[float, Run, ReadAhead, Callable[[], None]]:
    started = time.monotonic()
    if engine_name == "transformers":
        import bitsandbytes  # noqa: F401  # the libraries' import is not the model's load
    else:
        import llama_cpp  # noqa: F401
    import transformers  # noqa: F401

    line(f"bot ({engine_name}): importing its libraries", f"{time.monotonic() - started:.2f} s")
    started = time.monotonic()
    source = (lambda: ("v0001", lora)) if lora is not None else None
    if engine_name == "transformers":
        engine = HFEngine(settings, files, lora_source=source)
        engine._stop_ids = [len(engine.tokenizer) + 1]  # no such token: every run writes all the tokens asked for
    else:
        engine = LlamaCppEngine.for_default_model(settings, files, lora_source=source)
        engine._stop_ids = set()
    engine.loras.sync()
    load_s = time.monotonic() - started
    service = GenerationService(engine)

    def run(ids: list[int], tokens: int) -> tuple[float, float, int]:
        started = time.monotonic()
        first, count = None, 0
        for event in service.stream(f"user-{threading.get_ident()}", ids, tokens, hints):
            if first is None and getattr(event, "text", ""):
                first = time.monotonic() - started
            if isinstance(event, Generated):
                count = event.stats.completion_tokens
        return first or 0.0, time.monotonic() - started, count

    def close() -> None:
        service.close()
        getattr(engine, "close", lambda: None)()

    return load_s, run, lambda ids: service.read_ahead(ids, hints).result(), close


def llama_path(gguf: Path, n_threads: int, lora_gguf: Path | None) -> tuple[float, Run, Callable[[], None]]:
    from llama_cpp import Llama

    from bot.generation.llama_cpu import plain_llama_params

    started = time.monotonic()
    with plain_llama_params():  # the same weight buffers as the bot's engine
        llm = Llama(str(gguf), n_ctx=2048, n_threads=n_threads, verbose=False,
                    lora_path=str(lora_gguf) if lora_gguf else None)  # fmt: skip
    load_s = time.monotonic() - started
    lock = threading.Lock()  # one context: users take turns, as they do on the bot's one worker

    def run(ids: list[int], tokens: int) -> tuple[float, float, int]:
        started = time.monotonic()  # before the wait for the context: a user waits too
        with lock:
            llm.reset()
            first, count = None, 0
            for _token in llm.generate(ids, temp=0.0, top_k=1, reset=True):
                count += 1
                if first is None:
                    first = time.monotonic() - started
                if count == tokens:  # end-of-text is not a stop here: exactly `tokens` tokens
                    break
            return first or 0.0, time.monotonic() - started, count

    return load_s, run, lambda: None


def measure(
    name: str, load_s: float, run: Run, prompts: Prompts, tokens: int, runs: int, ahead: ReadAhead | None = None
) -> dict[str, float]:
    run(prompts.first(0), 8)  # warm-up: first-call costs (kernel repacking, caches) are not decoding
    singles = [run(prompts.first(1 + n), tokens) for n in range(runs)]
    first = statistics.median(s[0] for s in singles)
    decode = statistics.median((s[2] - 1) / (s[1] - s[0]) for s in singles)
    one_user = statistics.median(s[2] / s[1] for s in singles)
    results: list[tuple[float, float, int]] = []
    started = time.monotonic()
    threads = [
        threading.Thread(target=lambda n=n: results.append(run(prompts.first(100 + n), tokens))) for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    four_users = sum(r[2] for r in results) / (time.monotonic() - started)
    firsts = sorted(r[0] for r in results)
    line(f"{name}: warm load", f"{load_s:.2f} s")
    line(f"{name}: time to first token (median)", f"{first:.3f} s")
    line(f"{name}: decode tokens/s (median of {runs})", f"{decode:.1f}")
    line(f"{name}: aggregate tokens/s, 1 user / 4 users", f"{one_user:.1f} / {four_users:.1f}")
    line(f"{name}: 4 users' first tokens", ", ".join(f"{f:.2f}" for f in firsts) + " s")
    figures = {"load": load_s, "first": first, "decode": decode, "one": one_user, "four": four_users}
    if prompts.next(0) is not None:  # the conversation goes on: its next prompt starts as its first did
        nexts, read_ahead = [], []
        for n in range(runs):
            run(prompts.first(200 + n), 1)
            nexts.append(run(prompts.next(200 + n) or [], 1)[0])
            if ahead is not None:
                run(prompts.first(300 + n), 1)
                ahead(prompts.next_start(300 + n))
                read_ahead.append(run(prompts.next(300 + n) or [], 1)[0])
        figures["next_first"] = statistics.median(nexts)
        line(f"{name}: next reply's first token (median)", f"{figures['next_first']:.3f} s")
        if read_ahead:
            figures["next_first_ahead"] = statistics.median(read_ahead)
            line(f"{name}: the same, its start read ahead", f"{figures['next_first_ahead']:.3f} s")
    return figures


def kernel_limit(settings, files, prompts: Prompts, tokens: int, runs: int = 30) -> None:
    """`llama_decode` alone on the bot's llama.cpp context (no Python decoding rules), and what it
    allows: the best 4-user gain is what four users cost in kernel time against one user four times."""
    engine = LlamaCppEngine.for_default_model(settings, files)
    llama, ctx, batch = engine._llama, engine._ctx, engine._batch
    ids = prompts.first(0)
    chunk = 64
    position = dict.fromkeys(range(4), 0)

    def decode(rows: list[tuple[int, int]]) -> float:  # (sequence, token) per row
        batch.n_tokens = 0
        for index, (seq, token) in enumerate(rows):
            batch.token[index], batch.pos[index], batch.n_seq_id[index] = token, position[seq], 1
            batch.seq_id[index][0], batch.logits[index] = seq, True
            position[seq] += 1
            batch.n_tokens += 1
        started = time.perf_counter()
        if llama.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        return time.perf_counter() - started

    try:
        for seq in range(4):  # each reply's cache holds the product's prompt, as when replies are written
            llama.llama_memory_seq_rm(engine._memory, seq, 0, -1)
            for start in range(0, len(ids), chunk):
                decode([(seq, token) for token in ids[start : start + chunk]])
        for _ in range(5):  # warm-up: the first calls of each shape pay for buffers
            decode([(0, 42)]), decode([(seq, 42) for seq in range(4)]), decode([(0, 42)] * 4)
        one = statistics.median(decode([(0, 42)]) for _ in range(runs))
        four = statistics.median(decode([(seq, 42) for seq in range(4)]) for _ in range(runs))
        one_of_four = statistics.median(decode([(0, 42)] * 4) for _ in range(runs))
        reading = statistics.median(decode([(1, t) for t in ids[:chunk]]) for _ in range(5)) / chunk
        reading_four = statistics.median(decode([(s, t) for s in range(4) for t in ids[:chunk]]) for _ in range(5))
        reading_four /= 4 * chunk
    finally:
        engine.close()
    line("kernel: one token, 1 reply", f"{one * 1000:.1f} ms")
    line("kernel: one token each, 4 replies", f"{four * 1000:.1f} ms ({four / one:.2f}x the time for 4x the tokens)")
    line("kernel: 4 tokens of 1 reply", f"{one_of_four * 1000:.1f} ms")
    line("kernel: reading a prompt, 1 reply / 4 together", f"{1 / reading:.0f} / {1 / reading_four:.0f} tokens/s")
    # One user: read the prompt, write `tokens`; four: four prompts read (reading is compute-bound, and
    # the bot reads them one at a time so each reply is the one it gets alone), then `tokens` steps of 4.
    alone = len(ids) * reading + tokens * one
    together = 4 * len(ids) * reading + tokens * four
    line("kernel-level limit, 4 users / 1 user aggregate", f"{4 * alone / together:.2f}x on this prompt")


def run_engine(engine: str, settings, files, args, lora: Path | None) -> dict[str, float]:
    """One of the bot's engines, measured in this process (the child's side of `main`)."""
    from transformers import AutoTokenizer

    prompts = Prompts(AutoTokenizer.from_pretrained(files.path), settings, args.tokens, args.prompt)
    load_s, run, ahead, close = bot_path(settings, files, engine, lora, prompts.hints)
    line(f"bot ({engine}): prompt tokens", str(len(prompts.first(0))))
    try:
        return measure(f"bot ({engine})", load_s, run, prompts, args.tokens, args.runs, ahead)
    finally:
        close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=ENGINES, action="append", help="the bot's engines to run (default: both)")
    parser.add_argument("--prompt", choices=("plain", "conversation"), default="plain")
    parser.add_argument("--lora", action="store_true", help="serve a random LoRA (the trainer's shape)")
    parser.add_argument("--kernel", action="store_true", help="llama.cpp's own calls and the 4-user limit")
    parser.add_argument("--engine-here", choices=ENGINES, help=argparse.SUPPRESS)  # a child run of one engine
    parser.add_argument("--lora-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    settings = load_settings()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings.model_copy(update={"data_dir": Path(tmp), "log_level": "WARNING"})
        files = prepare_model(settings)
        if args.kernel:
            from transformers import AutoTokenizer

            prompts = Prompts(AutoTokenizer.from_pretrained(files.path), settings, args.tokens, args.prompt)
            kernel_limit(settings, files, prompts, args.tokens)
            return
        if args.engine_here:
            print(RESULT + json.dumps(run_engine(args.engine_here, settings, files, args, args.lora_dir)))
            return
        lora = random_lora(files, settings, Path(tmp) / "lora") if args.lora else None
        threads = os.cpu_count() or 1
        print(f"model {settings.model}, {threads} CPUs, {args.tokens} greedy tokens, {args.prompt} prompt"
              f"{', a random LoRA' if lora else ''}", flush=True)  # fmt: skip
        for engine in args.only or ENGINES:
            # Each engine in a process of its own, as it runs in the bot: one engine's libraries and
            # threads (torch's) measurably slow the other's when both live in one process.
            command = [sys.executable, __file__, "--engine-here", engine, "--tokens", str(args.tokens),
                       "--runs", str(args.runs), "--prompt", args.prompt]  # fmt: skip
            child = subprocess.run(command + (["--lora-dir", str(lora)] if lora else []),
                                   capture_output=True, text=True, check=True)  # fmt: skip
            lines = child.stdout.splitlines()
            print("\n".join(text for text in lines if not text.startswith(RESULT)), flush=True)
            results[engine] = json.loads(next(text for text in lines if text.startswith(RESULT))[len(RESULT) :])
        whole = None
        if "llama.cpp" in (args.only or ENGINES) and not lora:
            whole = bot_ask(args.tokens, args.runs, args.prompt, Path(tmp) / "bot-ask", QUESTION, ACME, line)
        from transformers import AutoTokenizer

        from bot.generation.lora_gguf import gguf_lora_path

        prompts = Prompts(AutoTokenizer.from_pretrained(files.path), settings, args.tokens, args.prompt)
        line("prompt tokens (the same ids for all)", str(len(prompts.first(0))))
        config = json.loads((Path(files.path) / "config.json").read_text())
        adapter = gguf_lora_path(lora, Path(tmp) / "lora-gguf", config) if lora else None
        plain = {}
        for name, gguf in (
            ("Q4_1 GGUF", default_gguf_path()),
            ("F16, the bot's file", serving_gguf(settings, default_gguf_path())),
        ):
            load_s, run, close = llama_path(gguf, threads, adapter)
            plain[name] = measure(f"plain llama.cpp ({name})", load_s, run, prompts, args.tokens, args.runs)
            close()
    llama, same_file = plain["Q4_1 GGUF"], plain["F16, the bot's file"]
    if whole is not None:
        line("bot ask / plain llama.cpp on its file: decode",
             f"{whole['decode'] / same_file['decode']:.2f}x (target >= 0.95x)")  # fmt: skip
        line("bot ask / plain llama.cpp (Q4_1): decode", f"{whole['decode'] / llama['decode']:.2f}x (target >= 0.9x)")
    if "llama.cpp" in results:
        line("bot (llama.cpp) / plain llama.cpp on its file: decode",
             f"{results['llama.cpp']['decode'] / same_file['decode']:.2f}x (target >= 0.9x)")  # fmt: skip
    for engine, bot in results.items():
        line(f"bot ({engine}) / plain llama.cpp (Q4_1): decode", f"{bot['decode'] / llama['decode']:.2f}x")
        line(f"bot ({engine}): first token", f"{bot['first']:.3f} s")
        if "next_first" in bot:
            line(f"bot ({engine}): next reply's first token", f"{bot['next_first']:.3f} s")
            line(f"bot ({engine}): the same, its start read ahead",
                 f"{bot['next_first_ahead']:.3f} s (target <= 0.2 s)")  # fmt: skip
        line(f"bot ({engine}): 4 users / 1 user aggregate", f"{bot['four'] / bot['one']:.2f}x (target >= 1.8x)")


if __name__ == "__main__":
    main()
