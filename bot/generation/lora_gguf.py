"""A peft LoRA, as the training pipeline saves it, rewritten as a GGUF adapter for llama.cpp.

llama.cpp loads LoRA adapters as GGUF files (`llama_adapter_lora_init`) and applies them at run
time, unmerged, like peft. Only the file layout differs: tensor names follow llama.cpp's
(`blk.3.attn_q.weight.lora_a`), and the query and key projections' output rows are stored in the
rotary layout llama.cpp's converter gives the base weights, so each `lora_B` of those two is
permuted the same way. The converted file is keyed by the adapter's contents: it is written once
and any registry, replica or rollback reuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

ADAPTER_FILE = "adapter_model.safetensors"
KEEP_CONVERTED = 16  # converted adapters kept (every gate converts a candidate; an old one converts again in ms)
_PEFT_PREFIX = "base_model.model."


def rotary_rows(weight: np.ndarray, heads: int) -> np.ndarray:
    """Rows of a query/key projection reordered as llama.cpp's converter orders them (within each
    head, the two rotary halves interleaved)."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def gguf_lora_path(adapter_dir: Path, cache_dir: Path, model_config: dict[str, Any]) -> Path:
    """Where the GGUF form of the adapter in `adapter_dir` lives (converted on first use).
    `model_config`: the base model's config.json."""
    source = adapter_dir / ADAPTER_FILE
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    target = cache_dir / f"{digest}.gguf"
    if not target.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        staging = target.with_suffix(f".{os.getpid()}.tmp")
        write_gguf_lora(adapter_dir, staging, model_config)
        staging.replace(target)  # atomic: a reader never sees half a file
        _prune(cache_dir)
    return target


def _prune(cache_dir: Path) -> None:
    """Keep the newest KEEP_CONVERTED adapters. The bot and a training gate share this folder, so a
    file may vanish between listing and reading its time: that is not an error."""
    dated = []
    for file in cache_dir.glob("*.gguf"):
        try:
            dated.append((file.stat().st_mtime, file))
        except FileNotFoundError:
            continue
    for _, old in sorted(dated)[:-KEEP_CONVERTED]:
        old.unlink(missing_ok=True)  # llama.cpp has read what it holds in memory already


def write_gguf_lora(adapter_dir: Path, target: Path, config: dict[str, Any]) -> None:
    """Write the peft adapter in `adapter_dir` as a GGUF LoRA adapter at `target`; `config` is the
    base model's config.json."""
    import gguf
    from safetensors.torch import load_file  # numpy has no bfloat16, which training saves in

    lora = json.loads((adapter_dir / "adapter_config.json").read_text())
    if lora.get("use_dora") or lora.get("use_rslora"):
        raise ValueError(f"{adapter_dir}: llama.cpp applies plain LoRA only (not DoRA or rsLoRA)")
    if config.get("model_type") != "llama":
        raise ValueError(f"{adapter_dir}: GGUF conversion is written for llama-architecture models")
    layers = int(config["num_hidden_layers"])
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, layers)
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for name, tensor in load_file(str(adapter_dir / ADAPTER_FILE)).items():
        base, _, part = name.removeprefix(_PEFT_PREFIX).rpartition(".lora_")
        if part not in ("A.weight", "B.weight"):
            raise ValueError(f"{adapter_dir}: unexpected tensor {name} (only LoRA A/B matrices convert)")
        pairs.setdefault(base, {})[part[0]] = tensor.float().numpy()
    writer = gguf.GGUFWriter(str(target), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(lora["lora_alpha"]))
    for base, pair in sorted(pairs.items()):
        gguf_name = names.get_name(base)
        if gguf_name is None or set(pair) != {"A", "B"}:
            raise ValueError(f"{adapter_dir}: cannot map {base} to a llama.cpp tensor")
        lora_b = pair["B"]
        if base.endswith("self_attn.q_proj"):
            lora_b = rotary_rows(lora_b, heads)
        elif base.endswith("self_attn.k_proj"):
            lora_b = rotary_rows(lora_b, kv_heads)
        writer.add_tensor(f"{gguf_name}.weight.lora_a", np.ascontiguousarray(pair["A"]))
        writer.add_tensor(f"{gguf_name}.weight.lora_b", np.ascontiguousarray(lora_b))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
