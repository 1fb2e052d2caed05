"""maskray's imports run one way (cli/commands -> jobs -> pipeline -> models) and hold no
cycle (issue 9): read from the source, lazy imports inside functions included, since a
cycle closed at call time is still two modules that cannot be understood apart."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAYERS = {"cli": 0, "commands": 0, "jobs": 1, "pipeline": 2, "models": 3}
# Owned by the inputs work of issue 9 (`pipeline.inputs.sampling` <-> `video`), not yet split.
KNOWN_CYCLES: list = []


def import_graph() -> dict[str, set[str]]:
    modules = {}
    for path in REPO.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[0] in ("tests", "benchmarks", "build") or parts[0].startswith("."):
            continue
        modules[".".join(("maskray", *parts)).removesuffix(".__init__")] = path
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("maskray"):
                for alias in node.names:  # `from maskray.models import rle` names a module
                    found.add(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names if alias.name.startswith("maskray"))
        graph[name] = {module for module in found if module in modules and module != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for neighbour in graph[node]:
            if neighbour not in index:
                visit(neighbour)
                low[node] = min(low[node], low[neighbour])
            elif neighbour in on_stack:
                low[node] = min(low[node], index[neighbour])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in graph:
        if node not in index:
            visit(node)
    return groups


def test_no_import_cycles():
    found = [group for group in cycles(import_graph()) if group not in KNOWN_CYCLES]
    assert found == []


def package_graph() -> dict[str, set[str]]:
    """The module graph folded to packages (`maskray.pipeline.output`, `maskray.models`, ...)."""
    def package(module: str) -> str:
        parts = module.split(".")
        if len(parts) > 3 and parts[1] == "pipeline":
            return ".".join(parts[:3])
        return ".".join(parts[:2])

    folded: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        folded.setdefault(package(module), set()).update(package(t) for t in targets)
    return {name: targets - {name} for name, targets in folded.items()}


def test_no_cycles_between_packages():
    # Two sub-packages that import each other (even inside functions) cannot be read apart:
    # inputs sit below output, output below tracking, and so on.
    assert cycles(package_graph()) == []


def test_imports_run_one_way():
    def layer(module: str):
        parts = module.split(".")
        return LAYERS.get(parts[1]) if len(parts) > 1 else None

    upward = [(module, target) for module, targets in import_graph().items() for target in targets
              if layer(module) is not None and layer(target) is not None and layer(target) < layer(module)]
    assert upward == []


def test_the_model_builder_and_weights_do_not_import_each_other():
    graph = import_graph()
    assert "maskray.models.build" not in graph["maskray.models.weights"]
    assert "maskray.models.variants" not in graph["maskray.jobs.training.train"]  # flag values: models.choices


def test_the_command_line_and_flag_values_load_without_torch():
    import subprocess
    import sys

    script = ("import sys, maskray.cli, maskray.models.choices, maskray.jobs.spec; "
              "print(sorted(m for m in ('torch', 'torchvision', 'ray') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
