"""Stage `code`: each stage's own code, as DVC sees it.

A stage's result depends on the project modules its work runs: its work function's module
and every module that reaches, through imports (lazy ones included) and module names in
strings (a registry's ``"module:Class"`` lines, the stage table's work functions). This stage
reads that graph from the source (no import runs) and writes, per stage, the hash of each
module it uses: ``data/code/<stage>.json``. Each stage of dvc.yaml depends on its own file,
so DVC re-runs a stage when, and only when, code it runs changed (editing the HTML report
re-runs `report`, not extraction), and dvc.yaml lists no module by hand. The `code` stage
itself depends on the three code packages and takes well under a second.

The wiring that runs a stage but computes none of its outputs (``WIRING``: the CLI, the
flows, the runtime, params loading and the stage table) is left out, as are the top-level
packages' ``__init__`` (a docstring each; tests/test_architecture.py checks).
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from config.paths import Paths

# Bottom to top: a package imports only the ones before it (and itself).
LAYERS = ("config", "models", "tasks", "runtime", "flows", "msaflow")
# The packages whose code a stage's results depend on (the `code` stage's own deps).
CODE = ("config", "models", "tasks")
# (tasks' own wiring by module name: a dotted string here would read as an import of it)
WIRING = ("runtime", "flows", "msaflow", *(f"tasks.{m}" for m in ("params", "stages",
                                                                   "codedeps")))
DOTTED = re.compile(r"^[a-z_]+(\.[a-z_0-9]+)+(:[A-Za-z_][A-Za-z_0-9]*)?$")


def modules(root: Path, packages: tuple[str, ...] = LAYERS) -> dict[str, Path]:
    """Every project module under ``root``: dotted name → file."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _resolve(candidate: str, known: set[str]) -> str | None:
    while candidate and candidate not in known:
        candidate = candidate.rpartition(".")[0]
    return candidate or None


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules ``name`` names anywhere in its file: imports (lazy ones included)
    and strings that spell a module (``"tasks.train:train_model"``, a registry line)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            candidates = [f"{base}.{a.name}" for a in node.names] + [base]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and DOTTED.match(node.value) and node.value.split(".")[0] in LAYERS:
            candidates = [node.value.partition(":")[0]]
        else:
            continue
        for candidate in candidates:
            found = _resolve(candidate, known)
            if found and found != name and not name.startswith(found + "."):
                targets.add(found)
    return targets


def graph(root: Path) -> tuple[dict[str, Path], dict[str, set[str]]]:
    """The project's modules and, for each, the project modules it names."""
    found = modules(root)
    known = set(found)
    return found, {name: imports(name, path, known) for name, path in found.items()}


def reach(start: str, edges: dict[str, set[str]]) -> set[str]:
    """``start`` and every module it reaches (wiring aside), with the packages they sit in
    (whose ``__init__`` runs on import), top-level packages aside."""
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module in seen or module.startswith(WIRING):
            continue
        seen.add(module)
        todo += edges[module]
    parents = {m.rsplit(".", k)[0] for m in seen for k in range(1, m.count("."))}
    return {m for m in seen | {p for p in parents if p in edges} if "." in m}


def stage_code(root: Path, works: dict[str, str]) -> dict[str, dict[str, str]]:
    """Per stage (``works``: stage name → its work function, ``"module:function"``): ``{file
    relative to root: md5 of its bytes}`` of every module it runs."""
    found, edges = graph(root)
    out = {}
    for name, work in works.items():
        used = reach(work.partition(":")[0], edges)
        out[name] = {
            found[m].relative_to(root).as_posix():
                hashlib.md5(found[m].read_bytes()).hexdigest()
            for m in sorted(used, key=lambda m: found[m].as_posix())}
    return out


def write_code(paths: Paths, works: dict[str, str]) -> dict[str, Any]:
    """``data/code/<stage>.json`` for every stage of ``works``."""
    from tasks.io import atomic_dir

    # the modules this process runs (an editable install: the repository the stage runs in)
    code = stage_code(Path(__file__).resolve().parents[1], works)
    with atomic_dir(paths.code) as tmp:
        for stage, files in code.items():
            (tmp / f"{stage}.json").write_text(json.dumps(files, indent=1) + "\n",
                                               encoding="utf-8")
    print(", ".join(f"{stage} {len(files)}" for stage, files in code.items()) + " modules")
    return {"stages": len(code), **{stage: len(files) for stage, files in code.items()}}
