"""The shape the project keeps: small modules, thin adapters, an SDK-free core, no import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "adapters")
CHAT_SDKS = ("slack_bolt", "slack_sdk", "discord")


def python_files(*roots: str) -> list[Path]:
    return sorted(path for root in roots for path in (REPO / root).rglob("*.py") if ".venv" not in path.parts)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path) -> set[str]:
    """Modules imported when `path` is imported: module level, outside `if TYPE_CHECKING:`."""
    found: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for inner in ast.walk(node) if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) else ():
            if isinstance(inner, ast.Import):
                found.update(alias.name for alias in inner.names)
            elif isinstance(inner, ast.ImportFrom):
                base = inner.module or ""
                if inner.level:  # relative: from the package, `level - 1` packages up
                    parts = package.split(".")
                    base = ".".join([*parts[: len(parts) - inner.level + 1], base]).strip(".")
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in inner.names)
    return found


def test_no_module_is_over_400_lines_and_adapters_are_under_300() -> None:
    too_long = {}
    for path in python_files("bot", "adapters", "bench", "tests"):
        limit = 300 if path.parent.name == "adapters" else 400
        lines = len(path.read_text().splitlines())
        if lines > limit and "emulators" not in path.parts:
            too_long[str(path.relative_to(REPO))] = lines
    assert too_long == {}, f"split these (limit 400 lines, adapters 300): {too_long}"


def test_the_core_imports_no_chat_sdk() -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(name for name in runtime_imports(path) if name.split(".")[0] in CHAT_SDKS)
        for path in python_files("bot")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_there_is_no_import_cycle() -> None:
    modules = {module_name(path): path for path in python_files(*PACKAGES)}
    graph = {
        name: sorted(m for m in runtime_imports(path) if m in modules and m != name) for name, path in modules.items()
    }
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for target in graph[name]:
            if state.get(target) == 1:
                cycles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[name] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])
    assert cycles == [], f"import cycles: {cycles}"
