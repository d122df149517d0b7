"""The shape of the house (docs/architecture.md, "Layers"), read from the source with ast.

- Arrows point down only: team_memory (the program) -> mcp_server (the front door) ->
  workflows -> activities -> team_memory_core (the shared home). mcp_server starts workflows
  by name and imports neither workflows nor activities. No product module imports bench/ or
  tests/ (the wheel ships neither).
- The Claude Code hook (team_memory.hook, and whatever it imports from the shared home)
  imports the standard library only: it runs on every Claude Code event.
- No product module is over MAX_LINES lines, but the redaction and injection rule tables.

Every import counts: at module level, inside functions and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("team_memory", "mcp_server", "workflows", "activities", "team_memory_core")
NOT_FROM = {"mcp_server": {"workflows", "activities"}}
NEVER = {"bench", "tests"}
HOOK = "team_memory.hook"
MAX_LINES = 450
RULE_TABLES = {"team_memory_core/rules/redaction.py"}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module's file, relative to the root
    line: int
    module: str  # the imported module, absolute


def product_files() -> list[Path]:
    return sorted(path for layer in LAYERS for path in (ROOT / layer).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports(path: Path) -> Iterator[Import]:
    source = str(path.relative_to(ROOT))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), source)):
        if isinstance(node, ast.Import):
            yield from (Import(source, node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            yield Import(source, node.lineno, base)
            # `from package import submodule` imports the submodule too.
            for alias in node.names:
                if module_file(f"{base}.{alias.name}") is not None:
                    yield Import(source, node.lineno, f"{base}.{alias.name}")


def top(module: str) -> str:
    return module.partition(".")[0]


def test_imports_point_down_only() -> None:
    wrong = []
    for path in product_files():
        for found in imports(path):
            importer, imported = top(module_name(path)), top(found.module)
            if imported in NEVER:
                wrong.append(f"{found.source}:{found.line} imports {found.module} "
                             "(not part of the product)")
            elif imported in LAYERS and importer != imported and (
                    LAYERS.index(imported) < LAYERS.index(importer)
                    or imported in NOT_FROM.get(importer, ())):
                wrong.append(f"{found.source}:{found.line}: {importer} imports "
                             f"{found.module}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def hook_closure() -> dict[str, list[Import]]:
    """Every product module the hook loads (packages' __init__ included), with its imports."""
    pending = [module_name(p) for p in (ROOT / "team_memory" / "hook").rglob("*.py")]
    seen: dict[str, list[Import]] = {}
    while pending:
        name = pending.pop()
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b first
            module = ".".join(parts[:depth])
            path = module_file(module)
            if module in seen or path is None:
                continue
            seen[module] = list(imports(path))
            pending += [i.module for i in seen[module] if top(i.module) in LAYERS]
    return seen


def test_the_hook_imports_the_standard_library_only() -> None:
    closure = hook_closure()
    assert {"team_memory.hook.__main__", "team_memory.hook.spool",
            "team_memory_core.hook_protocol", "team_memory_core.rules.redaction"} <= set(closure)
    wrong = [f"{found.source}:{found.line} imports {found.module}"
             for module_imports in closure.values() for found in module_imports
             if top(found.module) not in LAYERS
             and top(found.module) not in sys.stdlib_module_names and found.module != "__future__"]
    wrong += [f"the hook loads {module}" for module in closure
              if top(module) not in ("team_memory", "team_memory_core")]
    assert not wrong, "the hook must stay stdlib-only:\n" + "\n".join(wrong)


def test_the_scan_sees_what_it_must_refuse() -> None:
    """The checks above pass on today's tree; make sure they would not pass on anything."""
    hook_main = ROOT / "team_memory" / "hook" / "__main__.py"
    found = {i.module for i in imports(hook_main)}
    assert {"team_memory.hook.config", "team_memory.hook.events", "json"} <= found
    spool = {i.module for i in imports(ROOT / "team_memory" / "hook" / "spool.py")}
    assert "team_memory_core.rules.redaction" in spool  # imported inside a function
    cli = {i.module for p in (ROOT / "team_memory" / "cli").glob("*.py") for i in imports(p)}
    assert {"mcp_server.app", "workflows.worker"} <= cli  # the program may import downward


def line_counts() -> dict[str, int]:
    return {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in product_files()}


def test_no_product_module_is_over_the_limit() -> None:
    over = {name: lines for name, lines in line_counts().items()
            if lines > MAX_LINES and name not in RULE_TABLES}
    assert not over, f"modules over {MAX_LINES} lines: split them by role: {over}"
