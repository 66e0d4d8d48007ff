"""How much of a prompt an engine may take from the KV cache of one it read before, exactly.

Both engines read a prompt in chunks of `chunk` tokens aligned to absolute positions (0, chunk,
2*chunk, ...), the last piece being whatever is left. A chunk read for an earlier prompt was computed
just as a cold read of the new prompt computes it (same tokens before it, same positions, same batch
shape), so reusing whole chunks of the common start gives token for token the reply a cold read
gives. The last piece of the earlier prompt and the tokens its reply wrote (one at a time) were read
in other shapes, so they are never reused.
"""

from __future__ import annotations

from collections.abc import Sequence

CHUNK = 64  # tokens per chunk on a CPU (measured: bench/cpu_speed.py --prompt conversation)


def reusable(held: Sequence[int], prompt: Sequence[int], chunk: int = CHUNK) -> int:
    """Tokens of `prompt` whose KV a cache holding `held` (a prompt read in chunks) can keep: their
    common start, down to a chunk boundary, and never the whole prompt (its last token must be read
    for the first logits)."""
    limit = min(len(held), len(prompt) - 1)
    common = 0
    while common < limit and held[common] == prompt[common]:
        common += 1
    return common // chunk * chunk


def chunk_ends(start: int, length: int, chunk: int = CHUNK) -> list[int]:
    """Where each whole chunk read from `start` (a chunk boundary) ends, before the last piece of a
    prompt of `length` tokens: that piece (1 to `chunk` tokens) is read with the first logits."""
    return list(range(start + chunk, length, chunk))
