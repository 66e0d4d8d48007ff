"""Other phrasings of a training question, made by rules (no model, no download, deterministic).

Every stored example has one phrasing, and a LoRA trained on that phrasing only learns "copy the
verified answer when the question matches it word for word". Users ask otherwise: yes/no forms
("Can I…?", "Is there…?"), requests ("I need to…"), lower case without a question mark. Training rows
with such phrasings, each still answered with the verified answer, teach the skill that matters:
state the verified answer's facts whatever the phrasing.
"""

from __future__ import annotations

import random
import re

# (pattern on the question, templates filled with its groups): yes/no and request forms.
_RULES: list[tuple[re.Pattern[str], tuple[str, ...]]] = [
    (
        re.compile(r"^how (?:do|can) i (.+?)\??$", re.I),
        ("Can I {0}?", "Is it possible to {0}?", "I need to {0}, what do I do?", "What's the way to {0}?"),
    ),
    (
        re.compile(r"^what (?:is|are) (.+?)\??$", re.I),
        ("Do you know {0}?", "Tell me {0}.", "Is there information on {0}?", "Could you tell me {0}?"),
    ),
    (
        re.compile(r"^(which|where|when|who) (.+?)\??$", re.I),
        ("Do you know {0} {1}?", "Tell me {0} {1}.", "Can you say {0} {1}?"),
    ),
    (
        re.compile(r"^how (much|many|long|often) (.+?)\??$", re.I),
        ("Is there a limit on how {0} {1}?", "Tell me how {0} {1}.", "Do you know how {0} {1}?"),
    ),
    (
        re.compile(r"^can i (.+?)\??$", re.I),
        ("Am I allowed to {0}?", "How do I {0}?", "Is it possible to {0}?", "Will I be able to {0}?"),
    ),
    (
        re.compile(r"^(do|does|is|are) (.+?)\??$", re.I),
        ("Tell me whether {1}.", "Quick check: {0} {1}?", "I'd like to know if {1}."),
    ),
]


def question_variants(question: str, count: int, seed: int) -> list[str]:
    """Up to `count` phrasings of `question` other than itself, the same for the same seed."""
    if count <= 0:
        return []
    text = question.strip()
    specific: list[str] = []
    for pattern, templates in _RULES:
        match = pattern.match(text)
        if match:
            # A captured question word ("Does", "Which") moves mid-sentence; the rest keeps its case.
            groups = [g.lower() if g.isalpha() else g for g in match.groups()]
            specific += [_sentence(t.format(*groups)) for t in templates]
            break
    generic = [text.lower().rstrip("?").strip(), f"Quick question: {text[0].lower()}{text[1:]}"]
    rng = random.Random(f"{seed}:{text}")
    rng.shuffle(specific)
    seen = {_key(text)}
    chosen: list[str] = []
    for candidate in specific + generic:
        if _key(candidate) not in seen:
            seen.add(_key(candidate))
            chosen.append(candidate)
        if len(chosen) == count:
            break
    return chosen


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] if text else text


def _key(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))
