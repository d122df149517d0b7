"""SQL lives in team_memory_core/store/ and only there, and what it returns is typed.

The scan reads the product packages with ``ast`` (nothing is imported) and fails on:
- ``asyncpg.Record`` named outside store/ (an untyped row crossing the boundary);
- a statement run on a connection outside store/: a call of ``.fetch``, ``.fetchrow``,
  ``.fetchval``, ``.execute``, ``.executemany`` or a ``.copy_*`` method (acquiring a
  connection and opening ``tenant_tx``/``principal_tx`` is plumbing, and allowed);
- a store function whose return annotation names ``asyncpg.Record`` or ``Any``: asyncpg
  ships no types, so such a result would be ``Any`` to mypy and could be read by column
  name unnoticed; typed rows make every such read a mypy error;
- a string-keyed subscript (``row["id"]``) on a value that came from the store. The
  heuristic follows names within one function: a name bound by ``x = await f(...)`` where
  ``f`` is a store function (imported from a store module, or an attribute of an imported
  store module), by a ``for``/comprehension over such a name or such a call, and a
  subscript of such a call directly (a store function that returns a dict, such as counts
  per status, returns data keyed by value, not a row). It does not follow values through
  other functions or containers (mypy does, given the typed returns above), so it never
  flags the JSON and ASGI dicts the product reads by key.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("team_memory", "team_memory_core", "mcp_server", "workflows", "activities")
STORE = ROOT / "team_memory_core" / "store"
STORE_MODULE = "team_memory_core.store"
QUERY_METHODS = frozenset({"fetch", "fetchrow", "fetchval", "execute", "executemany"})


def product_files() -> Iterator[Path]:
    for package in PRODUCT:
        yield from sorted((ROOT / package).rglob("*.py"))


def outside_store() -> list[Path]:
    return [path for path in product_files() if STORE not in path.parents]


def _where(path: Path, node: ast.AST) -> str:
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return f"{shown}:{getattr(node, 'lineno', 0)}"


def _is_record(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "Record"
            and isinstance(node.value, ast.Name) and node.value.id == "asyncpg")


def record_uses(path: Path, tree: ast.AST) -> list[str]:
    found = [_where(path, node) for node in ast.walk(tree) if _is_record(node)]
    found += [_where(path, node) for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module == "asyncpg"
              and any(alias.name == "Record" for alias in node.names)]
    return found


def query_calls(path: Path, tree: ast.AST) -> list[str]:
    return [f"{_where(path, node)} .{node.func.attr}(...)" for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and (node.func.attr in QUERY_METHODS or node.func.attr.startswith("copy_"))]


def untyped_store_returns(path: Path, tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) \
                or node.name.startswith("_"):
            continue
        returns = node.returns
        if returns is None or any(_is_record(n) or (isinstance(n, ast.Name) and n.id == "Any")
                                  for n in ast.walk(returns)):
            found.append(f"{_where(path, node)} {node.name}")
    return found


def _returns_mapping(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    returns = function.returns
    if isinstance(returns, ast.Subscript):
        returns = returns.value
    return isinstance(returns, ast.Name) and returns.id in ("dict", "Mapping")


@functools.cache
def _mapping_functions() -> frozenset[str]:
    """Store functions whose result is a dict (keyed by data: counts per status)."""
    return frozenset(node.name for path in STORE.glob("*.py") for node in ast.walk(_parsed(path))
                     if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                     and _returns_mapping(node))


@dataclass
class _StoreNames:
    """What a module imported from store/: whole modules (by alias) and single names."""

    modules: set[str] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)
    mappings: frozenset[str] = field(default_factory=_mapping_functions)

    @classmethod
    def of(cls, tree: ast.AST) -> _StoreNames:
        names = cls()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == STORE_MODULE:
                names.modules |= {alias.asname or alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    STORE_MODULE + "."):
                names.functions |= {alias.asname or alias.name for alias in node.names}
            elif isinstance(node, ast.Import):
                names.modules |= {alias.asname for alias in node.names
                                  if alias.asname and alias.name.startswith(STORE_MODULE)}
        return names

    def is_store_call(self, node: ast.AST) -> bool:
        """``await f(...)`` (or ``f(...)``) where f comes from store/."""
        if isinstance(node, ast.Await):
            node = node.value
        if not isinstance(node, ast.Call):
            return False
        func = node.func
        if isinstance(func, ast.Name):
            return func.id in self.functions and func.id not in self.mappings
        return (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                and func.value.id in self.modules and func.attr not in self.mappings)


def _bound_names(target: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}


def _scopes(tree: ast.Module) -> list[ast.AST]:
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    module_level = ast.Module(body=[s for s in tree.body if not isinstance(
        s, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)], type_ignores=[])
    return [module_level, *functions]


def _rows_in(scope: ast.AST, store: _StoreNames) -> set[str]:
    """The names a scope binds to store results, iterated to a fixed point (a loop over a
    row list binds rows)."""
    rows: set[str] = set()

    def from_store(value: ast.AST) -> bool:
        return store.is_store_call(value) or (isinstance(value, ast.Name) and value.id in rows)

    while True:
        before = len(rows)
        for node in ast.walk(scope):
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None \
                    and from_store(node.value):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    rows |= _bound_names(target)
            elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension) \
                    and from_store(node.iter):
                rows |= _bound_names(node.target)
        if len(rows) == before:
            return rows


def row_subscripts(path: Path, tree: ast.Module) -> list[str]:
    store = _StoreNames.of(tree)
    found: dict[tuple[int, int], str] = {}  # a nested function is in two scopes: once each
    for scope in _scopes(tree):
        rows = _rows_in(scope, store)
        for node in ast.walk(scope):
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
                    and isinstance(node.slice.value, str) and (
                        (isinstance(node.value, ast.Name) and node.value.id in rows)
                        or store.is_store_call(node.value)):
                found[node.lineno, node.col_offset] = \
                    f"{_where(path, node)} [{node.slice.value!r}]"
    return [found[at] for at in sorted(found)]


def _parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def test_no_untyped_row_crosses_the_store_boundary() -> None:
    found = [hit for path in outside_store() for hit in record_uses(path, _parsed(path))]
    assert found == [], "asyncpg.Record outside team_memory_core/store/: " + ", ".join(found)


def test_sql_runs_only_in_the_store() -> None:
    found = [hit for path in outside_store() for hit in query_calls(path, _parsed(path))]
    assert found == [], "statements run outside team_memory_core/store/: " + ", ".join(found)


def test_store_functions_return_typed_values() -> None:
    found = [hit for path in sorted(STORE.glob("*.py"))
             for hit in untyped_store_returns(path, _parsed(path))]
    assert found == [], "store functions returning records or Any: " + ", ".join(found)


def test_no_row_is_read_by_column_name_outside_the_store() -> None:
    found = [hit for path in outside_store() for hit in row_subscripts(path, _parsed(path))]
    assert found == [], "rows read by column name: " + ", ".join(found)


def test_the_scan_finds_what_it_forbids(tmp_path: Path) -> None:
    """Each rule, on code that breaks it (so a green scan means something)."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import asyncpg\n"
        "from team_memory_core.store import memories as m\n"
        "from team_memory_core.store.tenants import list_tenants\n"
        "async def f(conn: asyncpg.Connection) -> asyncpg.Record:\n"
        "    rows = await conn.fetch('SELECT 1')\n"
        "    one = await m.get_memory(conn, 1)\n"
        "    names = [t['name'] for t in await list_tenants(conn)]\n"
        "    for row in await m.get_memories(conn, []):\n"
        "        print(row['id'], one['status'], (await m.fetch_status(conn, 1))['id'])\n"
        "    payload = {'a': 1}\n"
        "    return payload['a'], rows, names\n"
        "async def g(conn: asyncpg.Connection) -> list[Any]:\n"
        "    await conn.execute('SELECT 1')\n"
    )
    tree = _parsed(bad)

    def lines(hits: list[str]) -> list[str]:
        return [hit.removeprefix(f"{bad}:") for hit in hits]

    assert lines(record_uses(bad, tree)) == ["4"]
    assert lines(query_calls(bad, tree)) == ["5 .fetch(...)", "13 .execute(...)"]
    assert lines(untyped_store_returns(bad, tree)) == ["4 f", "12 g"]
    assert lines(row_subscripts(bad, tree)) == [
        "7 ['name']", "9 ['id']", "9 ['status']", "9 ['id']"]
