"""llama.cpp's library on this CPU: its log lines routed to ours, its CPU backend loaded and named,
and model parameters that avoid the weight buffers that crash here. Used by the engine, `bot doctor`,
the engine choice, and the benchmark's and tests' plain llama.cpp.
"""

from __future__ import annotations

import ctypes
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_LLAMA_LOG: Any = None
AMX_VARIANTS = {"sapphirerapids"}  # GGML_CPU_ALL_VARIANTS builds with AMX kernels


def _forward_log(level: int, text: bytes, _user_data: Any) -> None:
    """llama.cpp's log lines: errors as errors, the rest (load details, tuning notes) as debug."""
    message = text.decode("utf-8", "replace").rstrip()
    if message:
        log.log(logging.ERROR if level == 3 else logging.DEBUG, "llama.cpp: %s", message)


def load_llama_cpp() -> Any:
    """llama_cpp, with its log lines routed to ours (the callback is kept: C code calls it)."""
    global _LLAMA_LOG
    import llama_cpp

    if _LLAMA_LOG is None:
        _LLAMA_LOG = llama_cpp.llama_log_callback(_forward_log)
        llama_cpp.llama_log_set(_LLAMA_LOG, None)
    return llama_cpp


def ggml_cpu_backend(llama_cpp: Any) -> str:
    """Make sure ggml has its CPU backend, and say which: a build with GGML_BACKEND_DL (the image's,
    one library per CPU generation) keeps those libraries in site-packages/bin, where ggml does not
    look, and then had no device at all ("no backends are loaded"). Raises RuntimeError, naming the
    folders tried, when none loads."""
    lib_dir = Path(llama_cpp.__file__).resolve().parent / "lib"
    ggml = ctypes.CDLL(_mapped("libggml") or str(lib_dir / "libggml.so"))
    ggml.ggml_backend_dev_count.restype = ctypes.c_size_t
    ggml.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
    folders = [lib_dir, lib_dir.parent.parent / "bin", lib_dir.parent / "bin"]
    for folder in folders:
        if ggml.ggml_backend_dev_count() > 0:
            break
        if folder.is_dir():
            ggml.ggml_backend_load_all_from_path(str(folder).encode())
    if ggml.ggml_backend_dev_count() == 0:
        raise RuntimeError(f"llama.cpp loads no CPU backend (no libggml-cpu*.so that runs here in {folders})")
    variant = loaded_cpu_variant()
    if variant:
        return f"the {variant} build"  # of GGML_CPU_ALL_VARIANTS, the best this CPU runs
    features = llama_cpp.llama_print_system_info().decode(errors="replace").replace("CPU : ", "")
    return " ".join(f.split(" = ")[0].strip() for f in features.split("|") if f.strip().endswith("= 1"))


def loaded_cpu_variant() -> str | None:
    """Which libggml-cpu-<variant>.so ggml loaded (a GGML_BACKEND_DL build); None for a build with
    its CPU kernels linked in."""
    found = _mapped("libggml-cpu-")
    return re.sub(r"^libggml-cpu-|\.so.*$", "", Path(found).name) if found else None


def _mapped(prefix: str) -> str | None:
    """The path of a library this process has loaded whose name starts with `prefix` and has no other
    dash after it, from its memory map (None off Linux). A wheel holds copies, not links: libggml.so
    and libggml.so.0 are two libraries with a backend registry each, and only the one libllama loaded
    (libggml.so.0) is the one that counts."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    pattern = re.escape(prefix) + (r"[a-z0-9_]+\.so" if prefix.endswith("-") else r"\.so[.0-9]*")
    found = re.search(rf"(/\S*/{pattern})$", maps, re.M)
    return found.group(1) if found else None


def model_params_for_this_cpu(llama_cpp: Any, params: Any = None) -> Any:
    """llama.cpp's default model parameters (or `params`), without its AMX weight buffers where the
    build has them.

    A build made with native flags on a CPU with AMX moves Q8_0 weights into AMX buffers, and on the
    Sapphire Rapids VMs these machines run on, its AMX matrix product dies of SIGILL (`tileloadd`) at
    the first prompt of more than a few tokens: seen with llama-cpp-python 0.3.36, while a plain AMX
    program runs there, so the fault is ggml's. The weights then stay in plain buffers (AVX512 kernels).
    """
    params = llama_cpp.llama_model_default_params() if params is None else params
    if b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info() or loaded_cpu_variant() in AMX_VARIANTS:
        params.use_extra_bufts = False
    return params


@contextmanager
def plain_llama_params() -> Iterator[None]:
    """While it lasts, llama-cpp-python's high-level `Llama` loads with `model_params_for_this_cpu`
    (it takes no argument for it): the benchmark's and the tests' plain llama.cpp."""
    import llama_cpp.llama as high_level

    low_level = high_level.llama_cpp
    default = low_level.llama_model_default_params
    low_level.llama_model_default_params = lambda: model_params_for_this_cpu(low_level, default())
    try:
        yield
    finally:
        low_level.llama_model_default_params = default


def leave_cores_to_llama() -> None:
    """Give torch one thread in a process where llama.cpp writes the replies on the CPU.

    torch runs the embedder there (one query per message) and, left at its default, keeps a pool of
    OpenMP threads, one per core, that spin after each use and take the cores from llama.cpp's own
    threads while it decodes: `bot ask` decoded at 60 tokens/s against 70 with one torch thread, and
    at 24 under OMP_WAIT_POLICY=active (where torch's pool never sleeps), against 70 again
    (docs/cpu_speed.md). One thread embeds a question in a few milliseconds more."""
    import torch

    torch.set_num_threads(1)
