"""The import graph: no cycle between modules, lazy (function-level) imports included, and the parts of
the code (a top-level module, or a folder as one part) import exactly what docs/architecture.md's Layers
table says, so that each part can be understood and changed from what it imports and the map cannot
drift from the code."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("sodec_plugin", "pillow_codec", "comfyui_nodes")
ARCHITECTURE = REPO / "docs" / "architecture.md"
# Imports against the documented layers, each named with why it is still there (none today: the
# metrics moved below the models, sodec_plugin/metrics.py, which closed the loop models -> eval -> codec).
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_files() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(path: Path, name: str, files: dict[str, Path]) -> dict[str, bool]:
    """Project modules a file imports -> whether at module level (else only inside functions or under
    TYPE_CHECKING: an annotation that needs the other module back is a cycle of understanding too).
    `from package import module` names the module; `from module import name` the module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, bool] = {}

    def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        base = node.module or ""
        if node.level:
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
        return [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]

    def walk(node: ast.AST, module_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for m in targets(child):
                    while m and m not in files:  # an attribute of a module: that module
                        m = m.rpartition(".")[0]
                    if m and m != name:
                        found[m] = found.get(m, False) or module_level
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                walk(child, False)
            elif isinstance(child, ast.If) and _type_checking(child):
                walk(child, False)
            else:
                walk(child, module_level)

    walk(ast.parse(path.read_text()), True)
    return found


def graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: set(imports(path, name, files)) for name, path in files.items()}


def part(module: str) -> str:
    """The part of the code a module belongs to, as the Layers table names it: a folder (`models/`),
    else the module's file."""
    parts = module.split(".")
    if len(parts) == 1:
        return "pillow_codec/" if parts[0] == "pillow_codec" else f"{parts[0]}/__init__.py"
    if parts[0] == "pillow_codec" or (REPO / parts[0] / parts[1]).is_dir():
        return "pillow_codec/" if parts[0] == "pillow_codec" else f"{parts[0]}/{parts[1]}/"
    return f"{parts[0]}/{parts[1]}.py"


def part_imports() -> dict[tuple[str, str], bool]:
    """(importing part, imported part) -> whether any of the imports is at module level."""
    files = module_files()
    edges: dict[tuple[str, str], bool] = {}
    for name, path in files.items():
        for target, module_level in imports(path, name, files).items():
            if part(name) != part(target):
                key = (part(name), part(target))
                edges[key] = edges.get(key, False) or module_level
    return edges


def documented_layers() -> dict[str, tuple[set[str], set[str]]]:
    """docs/architecture.md's Layers table: part -> (what it imports, what only inside functions)."""
    text = ARCHITECTURE.read_text()
    section = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[set[str], set[str]]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("| `") else []
        if cells:
            assert len(cells) == 3, f"a Layers row needs three cells: {line}"
            names = [set(re.findall(r"`([^`]+)`", c)) for c in cells]
            assert len(names[0]) == 1 and cells[0] not in rows, f"one new part per row: {line}"
            rows[names[0].pop()] = (names[1], names[2])
    return rows


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}
    found = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for n in sorted(edges):
        if n not in state:
            visit(n, [n])
    return found


def test_no_import_cycles():
    # a package's __init__ re-exporting its submodules is not a cycle of logic: drop parent -> child edges
    edges = {a: {b for b in bs if not b.startswith(a + ".")} for a, bs in graph().items()}
    found = cycles(edges)
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_the_parts_form_no_cycle():
    edges: dict[str, set[str]] = {}
    for a, b in part_imports():
        if (a, b) not in KNOWN_VIOLATIONS:
            edges.setdefault(a, set()).add(b)
    found = cycles(edges)
    assert not found, "cycles between parts: " + "; ".join(" -> ".join(c) for c in found)


def test_every_part_imports_what_the_layers_table_says():
    layers = documented_layers()
    actual = part_imports()
    parts = {part(m) for m in module_files()}
    assert parts <= set(layers), f"parts missing from docs/architecture.md's Layers: {sorted(parts - set(layers))}"
    assert set(layers) <= parts, f"Layers rows for parts that no longer exist: {sorted(set(layers) - parts)}"
    problems = []
    for (a, b), module_level in sorted(actual.items()):
        may, lazily = layers[a]
        if (a, b) in KNOWN_VIOLATIONS:
            continue
        if b not in may | lazily:
            problems.append(f"{a} imports {b}, which its Layers row does not list")
        elif b in lazily and module_level:
            problems.append(f"{a} imports {b} at module level; its Layers row allows it only inside functions")
    for a, (may, lazily) in sorted(layers.items()):
        problems += [f"{a}'s Layers row lists {b}, which it no longer imports" for b in sorted(may | lazily)
                     if (a, b) not in actual]
    problems += [f"{a} -> {b} is listed as a known violation but no longer happens: remove it"
                 for a, b in KNOWN_VIOLATIONS if (a, b) not in actual]
    assert not problems, "\n".join(problems)
