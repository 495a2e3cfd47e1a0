"""The import graph of the project's own modules, read with ast (function-local imports too).

Layers, from the bottom: models/ (the domain: aggregates, their lifecycles, their queries);
services/ (one module per use case, each in a unit of work); web/ (the HTTP adapters) and tasks/
(the Celery adapters) on top. models/ imports none of the layers above it, services/ neither
web/ nor tasks/, and tasks/ never web/; celeryconfig imports neither; and no module takes part in
an import cycle, not even one dodged with an import inside a function. Steps are recorded only
through the unit of work, and a status changes only through its lifecycle.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The project's own code (tests and migrations are not layers of it).
PACKAGES = ("models", "services", "web", "tasks", "observability", "shared_state", "gateway", "stack", "bench",
            "chaos")
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


def test_models_import_no_layer_above_them():
    assert _offending("models", ("services", "web", "tasks")) == []


def test_services_import_neither_web_nor_tasks():
    assert _offending("services", ("web", "tasks")) == []


def test_only_the_unit_of_work_records_steps():
    """The outbox is written by the unit of work (and read by the publisher that empties it), so
    no view or task can record a step that its commit would not publish."""
    users = sorted(module for module, targets in _graph().items() if "models.outbox" in targets)
    assert users == ["models", "services.unit_of_work", "tasks.publishing"], users


def _status_assignments(path: Path) -> list[str]:
    """Where a module assigns an attribute named status, outside a method named _move."""
    found = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if isinstance(child, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                targets = child.targets if isinstance(child, ast.Assign) else [child.target]
                for target in targets:
                    if isinstance(target, ast.Attribute) and target.attr == "status" and function != "_move":
                        found.append(f"{path.name}:{child.lineno} in {function}")
            visit(child, name)

    visit(ast.parse(path.read_text()), None)
    return found


def test_a_status_changes_only_through_its_lifecycle():
    """Every status change of a booking, payment or ticket object goes through its _move, which
    asks the lifecycle (models/lifecycles.py); the set-based SQL is checked by its own tests."""
    offending = [hit for package in ("models", "services", "web", "tasks")
                 for path in sorted((ROOT / package).rglob("*.py")) for hit in _status_assignments(path)]
    assert offending == []


def test_the_status_finder_finds_an_assignment(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def pay(booking):\n    booking.status = 'PAID'\n\nclass B:\n    def _move(self):\n"
                      "        self.status = 'X'\n")
    assert _status_assignments(sample) == ["sample.py:2 in pay"]


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
