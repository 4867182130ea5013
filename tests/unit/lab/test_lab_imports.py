"""The lab's modules import each other one way only: no import cycle, not even one hidden in a function.

Every `import` and `from ... import` in tests/lab/**/*.py counts, wherever it is written (module
level, inside a function, under `if TYPE_CHECKING:`): a deferred import still couples two modules.
What a lower module needs from a higher one is passed in instead (the Engine hands HostContext its
native commands and its process; the rooms of tests/lab/pwsh see the interpreter through the
Interpreter protocol; the control API sees the Lab through LabAPI).
"""

from __future__ import annotations

import ast
import pathlib

from tests.lab.pwsh.interpreter import Interpreter

LAB = pathlib.Path(__file__).resolve().parents[2] / "lab"
PACKAGE = "tests.lab"


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(LAB.parent.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _lab_modules() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for p in sorted(LAB.rglob("*.py"))}


def _imports(name: str, path: pathlib.Path, modules: set[str]) -> set[str]:
    """The lab modules `name` imports; `from pkg import sub` counts as importing pkg.sub."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _lab_modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_lab_import_graph_has_no_cycle():
    graph = _graph()
    assert f"{PACKAGE}._engine" in graph and f"{PACKAGE}.pwsh.runtime" in graph  # the walk found the lab
    cycle = _find_cycle(graph)
    assert cycle is None, "lab import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_reports_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_engine_rooms_do_not_import_the_interpreter_or_the_lab_around_them():
    graph = _graph()
    rooms = {m for m in graph if m.startswith(f"{PACKAGE}.pwsh.") and m != f"{PACKAGE}.pwsh.runtime"}
    for room in sorted(rooms):
        assert f"{PACKAGE}.pwsh.runtime" not in graph[room], f"{room} imports the interpreter; take `rt` instead"
        outside = {m for m in graph[room] if not m.startswith(f"{PACKAGE}.pwsh")}
        assert not outside, f"{room} imports {outside}; the engine is handed what it needs from the lab"


def test_runtime_provides_everything_the_interpreter_protocol_promises():
    from tests.lab.pwsh import HostContext, Runtime

    promised = set(Interpreter.__annotations__) | {
        name for name, value in vars(Interpreter).items() if callable(value) and not name.startswith("_")}
    runtime = Runtime(HostContext(LAB, "WIN-LAB1", "vagrant", {}), streams=None)  # type: ignore[arg-type]
    missing = sorted(name for name in promised if not hasattr(runtime, name))
    assert not missing, f"Runtime lacks {missing}"
