"""The package's import graph follows the layer order that docs/architecture.md declares: no module
imports one from a higher layer, and no import closes a cycle. Imports inside functions count too."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "causal_router"
DOC = ROOT / "docs" / "architecture.md"


def declared_layers() -> list[list[str]]:
    """The layers, lowest first: each line of the code block under '## Layers' starts with its
    members (``name/`` for a subpackage, ``name.py`` for a module), comma-separated."""
    text = DOC.read_text()
    block = text.split("## Layers", 1)[1].split("```", 2)[1]
    layers = []
    for line in block.strip("\n").splitlines():
        head = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        members = [m.strip().removesuffix("/").removesuffix(".py") for m in head.split(",") if m.strip()]
        if members:
            layers.append(members)
    return layers


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports, anywhere in its body."""
    edges: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                candidates = [stem] + [f"{stem}.{a.name}" for a in node.names]
            else:
                continue
            for c in candidates:
                while c and c not in mods:
                    c = c.rpartition(".")[0]
                if c and c != name and c.startswith("causal_router"):
                    targets.add(c)
        edges[name] = targets
    return edges


def layer_of(module: str, layers: list[list[str]]) -> int | None:
    top = module.split(".")[1] if "." in module else None
    if top is None:
        return 0  # the package's __init__ (its version) sits with the base
    for i, members in enumerate(layers):
        if top in members:
            return i
    return None


def test_every_module_has_a_declared_layer():
    layers = declared_layers()
    assert len(layers) >= 10, layers
    missing = sorted({m.split(".")[1] for m in modules() if "." in m and layer_of(m, layers) is None})
    assert not missing, f"modules with no layer in docs/architecture.md: {missing}"


def test_no_import_runs_up_the_layers():
    layers, mods = declared_layers(), modules()
    bad = []
    for a, targets in imports(mods).items():
        for b in targets:
            la, lb = layer_of(a, layers), layer_of(b, layers)
            if la is not None and lb is not None and lb > la:
                bad.append(f"{a} ({'/'.join(layers[la])}) imports {b} ({'/'.join(layers[lb])})")
    assert not bad, "imports that run up the layers:\n" + "\n".join(sorted(bad))


def test_no_import_cycle():
    edges = imports(modules())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checker_sees_deferred_and_relative_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "causal_router"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("")
    (pkg / "a" / "x.py").write_text("def f():\n    from ..b import y\n")
    (pkg / "b.py").write_text("from .a import x\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    edges = imports(modules())
    assert "causal_router.b" in edges["causal_router.a.x"] and "causal_router.a.x" in edges["causal_router.b"]
