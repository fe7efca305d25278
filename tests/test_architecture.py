"""The floor plan: no import cycle, stages reach plugins only through their registries,
and a feature set is one new file plus one registration line."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from pathlib import Path

import pytest

from tasks import features, sources

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("msaflow", "flows", "tasks", "models")
# The stage modules: what DVC's stages and the flows call. They must not name a plugin.
STAGES = ("ingest", "extract", "cache", "train", "evaluate", "predict", "retrain")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules ``name`` imports anywhere in its file (lazy imports included)."""
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
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name and not name.startswith(candidate + "."):
                targets.add(candidate)
    return targets


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                out.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_module_imports() -> None:
    for package in PACKAGES:
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, f"{package}."):
            importlib.import_module(info.name)


def test_no_import_cycle() -> None:
    modules = _modules()
    known = set(modules)
    # A package's __init__ may import its children (a registry loading its plugins); the
    # edges that matter are between modules, as the project's layers run.
    graph = {
        name: set() if path.name == "__init__.py" else _imports(name, path, known)
        for name, path in modules.items()
    }
    assert _cycles(graph) == []
    # The layers point one way: nothing imports the CLI, and models know no stage.
    assert not [m for m, deps in graph.items() if "msaflow.cli" in deps]
    assert not [m for m, deps in graph.items()
                if m.startswith("models.") and any(d.startswith(("tasks", "flows")) for d in deps)]


def test_the_checker_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _string_constants(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.value for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


@pytest.mark.parametrize("stage", STAGES)
def test_stage_modules_name_no_plugin(stage: str) -> None:
    plugins = set(features.names()) | set(sources.names()) | set(sources.layout_names())
    plugins -= {"text"}  # the text modality shares its name with its one feature set
    named = _string_constants(ROOT / "tasks" / f"{stage}.py") & plugins
    assert not named, f"tasks/{stage}.py names {sorted(named)}: go through the registry"


def test_registries_list_names_without_importing_plugins() -> None:
    assert features.names("audio") == ["egemaps", "librosa"]
    assert features.names("vision") == ["facemesh", "openface"]
    assert sources.names() == ["csd", "mmsa_pkl", "raw"]
    assert sources.layout_names() == ["folder", "iemocap", "meld", "mmsa"]
    for name in features.names():
        chosen = features.get(name)
        assert chosen.name == name and chosen.outputs
    for name in sources.names():
        assert sources.get(name).name == name
    assert sources.get("raw").media and not sources.get("csd").media


PLUGIN = '''
"""A user's audio feature set: frame RMS energy, one row per extract.audio.hop_seconds."""

import numpy as np

from tasks.features import register
from tasks.features.media import decode_audio


@register("rms", modality="audio", keys=("sample_rate", "hop_seconds"),
          description="RMS energy per hop", dims=lambda section, width: ["rms"])
def compute(clip, section):
    y = decode_audio(clip.media, section.sample_rate, clip.start, clip.end)
    hop = int(section.hop_seconds * section.sample_rate)
    n = max(1, len(y) // hop)
    frames = y[: n * hop].reshape(n, hop)
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(1, keepdims=True)).astype(np.float32)
    starts = np.arange(n) * section.hop_seconds
    return {"features": rms, "intervals": np.stack([starts, starts + section.hop_seconds], 1)}, []
'''


def test_a_new_feature_set_is_one_file_and_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from msaflow.params import ParamsError, load_params
    from msaflow.paths import Paths
    from tasks import extract
    from tasks.contracts import write_manifest
    from tasks.formats.csd import read_csd
    from tests.features.test_media import make_mp4

    (tmp_path / "my_rms.py").write_text(PLUGIN)  # the new file ...
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(features._MODULES, "rms", ("audio", "my_rms"))  # ... and its line
    with pytest.raises(ParamsError, match="extract.vision.feature_set: unknown vision"):
        load_params(ROOT / "params.yaml", {"extract.vision.feature_set": "rms"})
    params = load_params(ROOT / "params.yaml", {"extract.audio.feature_set": "rms",
                                                 "extract.workers": 1})
    paths = Paths.from_params(params, base=tmp_path)
    clip = make_mp4(tmp_path / "c.mp4", seconds=1.0)
    import pandas as pd

    paths.interim.mkdir(parents=True)
    write_manifest(paths.manifest, pd.DataFrame([{
        "clip_id": "v$_$0", "video_id": "v", "split": "train", "media": str(clip),
        "start": "", "end": "", "text": "a short test", "label": 0.5, "label_class": 2,
        "annotation": "Positive",
    }]))
    summary = extract.run(params, paths)
    assert summary["computed_audio"] == 1 and "rms.csd" in summary["sequences"]
    with read_csd(paths.csd_dir / "rms.csd") as csd:
        feats, _ = csd.get("v$_$0")
        assert feats.shape == (25, 1) and csd.metadata["dimension names"] == ["rms"]
        assert csd.metadata["extractor params"]["audio"]["feature_set"] == "rms"
