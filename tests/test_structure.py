"""The package's import graph has no cycle, lazy (function-level) imports included: each module can be
understood and changed from the modules it imports, and none of them imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("sodec_plugin", "pillow_codec", "comfyui_nodes")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, name: str) -> set[str]:
    """Project modules imported anywhere in a file: top level, functions and TYPE_CHECKING blocks (an
    annotation that needs the other module back is a cycle of understanding too)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}
    edges = {}
    for name, path in files.items():
        # an import of a package's attribute counts as an import of that package's module when one exists
        edges[name] = {m for m in imports(path, name) if m in files and m != name} | {
            m.rpartition(".")[0] for m in imports(path, name) if m not in files and m.rpartition(".")[0] in files
            and m.rpartition(".")[0] != name}
    return edges


def test_no_import_cycles():
    edges = graph()
    # a package's __init__ re-exporting its submodules is not a cycle of logic: drop parent -> child edges
    edges = {a: {b for b in bs if not b.startswith(a + ".")} for a, bs in edges.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for n in sorted(edges):
        if n not in state:
            visit(n, [n])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
