"""README's configuration table, generated from the settings model so that it cannot drift
(tests/test_config.py compares them). `python -m bot.settings_table --update-readme` rewrites it."""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic.fields import FieldInfo

from bot.config import SETTING_ENV_VARS, TuningSettings, settings_fields

TABLE_START, TABLE_END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"
REGENERATE = "python -m bot.settings_table --update-readme"
README = Path(__file__).resolve().parent.parent / "README.md"


def _shown_default(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    value = ",".join(value) if isinstance(value, list) else str(value).lower() if isinstance(value, bool) else value
    return "none" if value in (None, "") else f"`{value}`"  # lists and booleans as an env var takes them


def settings_table() -> str:
    """README's configuration table, from the model: every setting, its variable, default and meaning;
    not the measured values of `tuning`, which are the benchmarks' to vary (docs/training.md)."""
    rows = ["| setting | env var | default | meaning |", "| --- | --- | --- | --- |"]
    for dotted, model, _, field in settings_fields():
        if model is TuningSettings:
            continue
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| {dotted} | `{SETTING_ENV_VARS[dotted]}` | {_shown_default(field)} | {meaning} |")
    return "\n".join(rows) + "\n"


def readme_with_table(text: str) -> str:
    """README's text with the table between its marker comments regenerated."""
    head, start, rest = text.partition(TABLE_START)
    _, end, tail = rest.partition(TABLE_END)
    if not (start and end):
        raise ValueError(f"no {TABLE_START} ... {TABLE_END} markers in the README")
    return f"{head}{TABLE_START}\n{settings_table()}{TABLE_END}{tail}"


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown"]:
        sys.stdout.write(settings_table())
    elif sys.argv[1:] == ["--update-readme"]:
        README.write_text(readme_with_table(README.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        sys.exit(f"usage: python -m bot.settings_table --markdown (print README's settings table) | {REGENERATE}")
