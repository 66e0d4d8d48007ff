"""Splitting long replies into platform-sized messages; one function for every adapter."""

from __future__ import annotations

import re

_FENCE = re.compile(r"^```[^\n`]*", re.MULTILINE)
_SENTENCE_END = re.compile(r"[.!?…][\"')\]*_]*\s")
_CLOSE = "\n```"


def split_text(text: str, limit: int) -> list[str]:
    """Parts of at most `limit` characters, cut at the cleanest boundary: a paragraph, a line, a
    sentence, a word, and only as a last resort mid-word. A code block cut in two is closed at
    the end of one part and reopened (same language) in the next.

    Each cut depends only on the text before it, so parts already shown stay the same while a
    streamed reply grows.
    """
    parts: list[str] = []
    rest = text.strip()
    reopen = ""  # the fence line that continues an open code block in the next part
    while len(reopen) + len(rest) > limit:
        room = limit - len(reopen)
        cut = _best_cut(rest[:room])
        if len(_FENCE.findall(reopen + rest[:cut])) % 2:
            cut = _best_cut(rest[: room - len(_CLOSE)])  # leave room to close the block
        chunk = reopen + rest[:cut].rstrip()
        fences = _FENCE.findall(chunk)
        if len(fences) % 2:
            parts.append(chunk + _CLOSE)
            reopen = fences[-1].rstrip() + "\n"
            rest = rest[cut:].lstrip("\n")  # keep the code's indentation
        else:
            parts.append(chunk)
            reopen = ""
            rest = rest[cut:].lstrip()
    if rest or not parts:
        parts.append(reopen + rest)
    return parts


def _best_cut(window: str) -> int:
    half = len(window) // 2
    for separator in ("\n\n", "\n"):
        at = window.rfind(separator)
        if at > half:
            return at
    ends = [m.end() for m in _SENTENCE_END.finditer(window)]
    if ends and ends[-1] > half:
        return ends[-1]
    at = window.rfind(" ")
    return at if at > 0 else len(window)
