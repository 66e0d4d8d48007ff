"""What every adapter does to the text it posts: links in plain sight, and long replies split into
platform-sized messages."""

from __future__ import annotations

import re

_FENCE = re.compile(r"^```[^\n`]*", re.MULTILINE)
_SENTENCE_END = re.compile(r"[.!?…][\"')\]*_]*\s")
_CLOSE = "\n```"
# `](`, `][` and `]:` are what make a Markdown link, a reference link or a link definition: Slack's
# Markdown and Discord render `[Sign in](https://evil.example)` as "Sign in", its address hidden.
_LINK_SYNTAX = re.compile(r"\](?=[(\[:])")
_WORD_JOINER = "\u2060"  # invisible; no Markdown parser sees "]\u2060(" as a link


def plain_links(text: str) -> str:
    """The text with no link that hides its address: a Markdown link shows as its label and its
    address as written (which the platform may link, in plain sight). Idempotent, and local to two
    characters with no space between them, so pieces cut at whitespace convert to the same as the
    whole (a stream appends such pieces)."""
    return _LINK_SYNTAX.sub("]" + _WORD_JOINER, text)


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
