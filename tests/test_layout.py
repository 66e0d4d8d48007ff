"""The shape the project keeps (docs/architecture.md): bot/ in packages by role, small modules, thin
adapters, an SDK-free core, and no import loop, counting every import: module level, inside
functions and under `if TYPE_CHECKING:` alike (a loop hidden in a function is still a loop in the
design)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "adapters")
CHAT_SDKS = ("slack_bolt", "slack_sdk", "discord")
# The modules that belong at the top of bot/: the core and what every part shares. Everything else
# lives in a package by role: generation/, stores/, training/ (the bot's side), finetune/ (the
# training process), cli/, ops/.
TOP_OF_BOT = {
    "__init__", "__main__", "core", "commands", "config", "embedder", "evaluation", "feedback_rules", "jsonl",
    "prompt", "query_adapter", "retrieval", "setting_sections", "settings_table", "status", "types", "wiring",
}  # fmt: skip
PACKAGES_OF_BOT = {"cli", "data", "finetune", "generation", "ops", "stores", "training", "web"}


def python_files(*roots: str) -> list[Path]:
    return sorted(path for root in roots for path in (REPO / root).rglob("*.py") if ".venv" not in path.parts)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_by(node: ast.AST, path: Path) -> set[str]:
    """The modules (and `module.name`s) one import statement in `path` imports; empty for other nodes."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if not isinstance(node, ast.ImportFrom):
        return set()
    base = node.module or ""
    if node.level:  # relative: from the package, `level - 1` packages up
        package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
        parts = package.split(".")
        base = ".".join([*parts[: len(parts) - node.level + 1], base]).strip(".")
    return {base, *(f"{base}.{alias.name}" for alias in node.names)}


def runtime_imports(path: Path) -> set[str]:
    """Modules imported when `path` is imported: module level, outside `if TYPE_CHECKING:`."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for inner in ast.walk(node) if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) else ():
            found |= imported_by(inner, path)
    return found


def all_imports(path: Path) -> set[str]:
    """Every module `path` imports, wherever the import statement is (functions and TYPE_CHECKING too)."""
    return set().union(*(imported_by(node, path) for node in ast.walk(ast.parse(path.read_text()))))


def import_graph() -> dict[str, list[str]]:
    """Module -> the project's modules it imports (any import statement), for bot/ and adapters/."""
    modules = {module_name(path): path for path in python_files(*PACKAGES)}
    return {name: sorted(m for m in all_imports(path) if m in modules and m != name) for name, path in modules.items()}


def cycles_in(graph: dict[str, list[str]]) -> list[list[str]]:
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
    return cycles


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


def test_there_is_no_import_loop_even_through_function_level_or_type_checking_imports() -> None:
    assert cycles_in(import_graph()) == [], "import loops"


def test_the_packages_import_each_other_one_way_only() -> None:
    """bot/'s packages, each taken as one node (a module at the top of bot/ stays itself), import
    each other one way only: the training process (finetune) uses the bot's training side, never the
    other way round; the core uses generation and stores, which never use the core. Entry points
    (`__main__`) are left out: nothing imports them."""

    def node(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2]) if parts[0] == "bot" and len(parts) > 2 else module

    graph: dict[str, set[str]] = {}
    for name, targets in import_graph().items():
        if name.endswith("__main__"):
            continue
        graph.setdefault(node(name), set()).update(node(t) for t in targets if node(t) != node(name))
    for targets in graph.values():
        graph.update({t: graph.get(t, set()) for t in targets})
    assert cycles_in({name: sorted(targets) for name, targets in graph.items()}) == []


def test_a_loop_hidden_in_a_function_is_found(tmp_path: Path) -> None:
    """The check itself: an import inside a function or under TYPE_CHECKING counts."""
    (tmp_path / "a.py").write_text("def f():\n    from b import g\n")
    (tmp_path / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\n")
    graph = {"a": sorted(all_imports(tmp_path / "a.py") & {"b"}), "b": sorted(all_imports(tmp_path / "b.py") & {"a"})}
    assert cycles_in(graph) == [["a", "b", "a"]]


def test_only_the_core_and_what_every_part_shares_sit_at_the_top_of_bot() -> None:
    top = {path.stem for path in (REPO / "bot").glob("*.py")}
    packages = {path.name for path in (REPO / "bot").iterdir() if path.is_dir() and path.name != "__pycache__"}
    assert top - TOP_OF_BOT == set(), "put these in a package by role (docs/architecture.md)"
    assert packages == PACKAGES_OF_BOT


def test_the_training_process_never_imports_the_bots_wiring() -> None:
    """bot/finetune/ builds its own parts (bot/finetune/parts.py): the bot's wiring would start runners."""
    offenders = {module_name(p): sorted(m for m in all_imports(p) if m.startswith(("bot.wiring", "bot.cli")))
                 for p in (REPO / "bot" / "finetune").rglob("*.py")}  # fmt: skip
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_engine_is_reached_into_with_getattr() -> None:
    """The engine protocol (bot/generation/engine.py) names every attribute its users read."""
    offenders = [
        f"{path.relative_to(REPO)}:{node.lineno}"
        for path in python_files("bot", "adapters")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr"
        and "engine" in ast.unparse(node.args[0])
    ]  # fmt: skip
    assert offenders == []
