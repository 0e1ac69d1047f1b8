"""What each pipeline stage's result depends on: its code (the package source it runs, the same
paths ``dvc.yaml`` lists as the stage's code deps) and its input files' contents.

The Prefect flow caches a stage on ``INPUTS`` (parameters and the inputs' :func:`digest`) plus
:class:`StageCode` (the hash of the stage's source), and reruns a stage whose recorded outputs
are missing or damaged (:func:`outputs_intact`).
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.cache_policies import CachePolicy

from ..hashing import file_md5, hash_path

PACKAGE = Path(__file__).resolve().parents[1]  # src/causal_router

#: Package source each stage runs, relative to ``src/causal_router`` (a folder: all its modules).
#: ``tests/pipeline/test_caching.py`` checks it covers every module the stage imports, and that
#: dvc.yaml lists the same paths.
STAGE_CODE: dict[str, tuple[str, ...]] = {
    "validate": ("pipeline/stages.py", "pipeline/layout.py", "data", "validation", "settings/prices.py", "errors.py",
                 "jsonable.py"),
    "embed": ("pipeline/stages.py", "pipeline/layout.py", "pipeline/runners.py", "data", "validation", "features",
              "errors.py", "hashing.py"),
    "crossfit": ("pipeline/stages.py", "pipeline/layout.py", "causal", "policy", "data", "validation", "features",
                 "settings/prices.py", "errors.py", "hashing.py"),
    "train": ("pipeline/stages.py", "pipeline/layout.py", "causal", "policy", "data", "features", "errors.py",
              "hashing.py"),
    # the routers are unpickled: their classes' code (policy, causal, features) predicts
    "evaluate": ("pipeline/stages.py", "pipeline/layout.py", "evaluation", "policy", "causal", "data", "validation",
                 "features", "errors.py", "hashing.py"),
}


def source_digest(stage: str) -> str:
    """md5 over the DVC hashes of the stage's package source (:data:`STAGE_CODE`)."""
    h = hashlib.md5(usedforsecurity=False)
    for rel in STAGE_CODE[stage]:
        h.update(f"{rel}\x00{hash_path(PACKAGE / rel)}\x00".encode())
    return h.hexdigest()


@dataclass
class StageCode(CachePolicy):
    """Cache key part: the hash of the package source a stage runs (edits to ``causal/`` or
    ``policy/`` invalidate the cross-fit and train results; Prefect's TASK_SOURCE only sees the
    thin task wrapper)."""

    stage: str = ""

    def compute_key(self, task_ctx: Any, inputs: dict, flow_parameters: dict, **kwargs) -> str | None:
        return source_digest(self.stage)


def output_hashes(*paths) -> dict[str, str]:
    """{path: md5} of every file at or below ``paths``: recorded in a stage's cached result."""
    out = {}
    for p in map(Path, paths):
        files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
        out.update({str(f): file_md5(f) for f in files})
    return out


def outputs_intact(hashes: dict[str, str]) -> bool:
    """Whether every recorded output still exists with the same content."""
    return all(Path(p).is_file() and file_md5(p) == md5 for p, md5 in hashes.items())


def _module_file(name: str) -> Path | None:
    parts = name.split(".")[1:]
    base = PACKAGE.joinpath(*parts) if parts else PACKAGE
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imports(tree: ast.AST, module: str) -> set[str]:
    out = set()
    pkg = module if _module_file(module) and _module_file(module).name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names]
            out.update(n for n in [target, *names] if n.startswith("causal_router") and _module_file(n))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("causal_router") and _module_file(a.name))
    return out


def imported_modules(stage: str) -> set[str]:
    """Package modules the stage function ``<stage>_stage`` of ``pipeline/stages.py`` runs: its own
    imports and the module's, then everything those import (lazy imports included), transitively."""
    stages_file = PACKAGE / "pipeline" / "stages.py"
    tree = ast.parse(stages_file.read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == f"{stage}_stage")
    top = ast.Module(body=[n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))], type_ignores=[])
    todo = _imports(fn, "causal_router.pipeline.stages") | _imports(top, "causal_router.pipeline.stages")
    seen = {"causal_router.pipeline.stages"}
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo |= _imports(ast.parse(_module_file(m).read_text()), m)
    return seen


def covered(stage: str) -> list[str]:
    """Modules the stage imports that :data:`STAGE_CODE` leaves out (empty when it is complete)."""
    paths = [PACKAGE / rel for rel in STAGE_CODE[stage]]
    missing = []
    for m in sorted(imported_modules(stage)):
        f = _module_file(m)
        if f == PACKAGE / "__init__.py":
            continue
        if not any(f == p or p in f.parents for p in paths):
            missing.append(str(f.relative_to(PACKAGE)))
    return missing
