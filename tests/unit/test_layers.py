"""The import graph of the project's own modules, read with ast (function-local imports too).

Layers: models/ is the domain and imports neither web/ nor tasks/; tasks/ (the workers) never
imports web/ (the HTTP layer); celeryconfig imports neither; and no module takes part in an
import cycle, not even one dodged with an import inside a function.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The project's own code (tests and migrations are not layers of it).
PACKAGES = ("models", "web", "tasks", "observability", "shared_state", "gateway", "stack", "bench", "chaos")
TOP_MODULES = ("celeryconfig", "wsgi")


def _module_files() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join(parts)] = path
    for name in TOP_MODULES:
        if (ROOT / f"{name}.py").exists():
            files[name] = ROOT / f"{name}.py"
    return files


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `name` imports, anywhere in its file (module level or in a function)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import sub` imports the submodule pkg.sub; `from pkg import name` imports pkg.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a non-module attribute
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    files = _module_files()
    known = set(files)
    return {name: _imports(name, path, known) for name, path in files.items()}


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _offending(source_package: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f"{module} -> {target}" for module, targets in _graph().items() if _in(module, source_package)
                  for target in targets if any(_in(target, package) for package in forbidden))


def test_the_graph_is_read():
    graph = _graph()
    assert "models.bookings" in graph and "web" in graph and "tasks" in graph
    assert "models.database" in graph["models.bookings"]


def test_models_import_neither_web_nor_tasks():
    assert _offending("models", ("web", "tasks")) == []


def test_tasks_never_import_web():
    assert _offending("tasks", ("web",)) == []


def test_celeryconfig_imports_neither_tasks_nor_web():
    assert _offending("celeryconfig", ("tasks", "web")) == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each as one cycle path."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_a_cycle_in(sorted(component), graph) for component in components]


def _a_cycle_in(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    members, start = set(component), component[0]
    paths, seen = [[start]], {start}
    while paths:  # breadth first from start back to start, inside the component
        path = paths.pop(0)
        for nxt in sorted(graph[path[-1]] & members):
            if nxt == start:
                return path + [start]
            if nxt not in seen:
                seen.add(nxt)
                paths.append(path + [nxt])
    return component


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)
