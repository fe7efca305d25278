"""The floor plan: packages in layers that import downward only, no import cycle, one stage
table that the CLI, the flows and the pipeline follow, dvc.yaml deps that follow the imports,
params validation without heavy imports, and plugins that are one file plus one line."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tasks import codedeps, features, sources, stages
from tasks.sources import layouts

ROOT = Path(__file__).resolve().parents[1]
# Bottom to top: a package imports only the ones before it (and itself); the import graph is
# the one the `code` stage reads (tasks/codedeps.py).
LAYERS = codedeps.LAYERS
# The stage modules: what DVC's stages and the flows call. They must not name a plugin.
STAGE_MODULES = ("ingest", "extract", "cache", "train", "evaluate", "predict", "retrain")
_imports = codedeps.imports


def _graph(root: Path = ROOT) -> tuple[dict[str, Path], dict[str, set[str]]]:
    return codedeps.graph(root)


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
    for package in LAYERS:
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, f"{package}."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)


def test_packages_import_downward_only() -> None:
    """Each top-level package imports only those below it, lazy imports and module names
    in strings included: no two packages import each other."""
    modules, graph = _graph()
    upward = [
        f"{m} -> {d}" for m, deps in graph.items() for d in deps
        if LAYERS.index(d.split(".")[0]) > LAYERS.index(m.split(".")[0])
    ]
    assert upward == []


def test_no_import_cycle_between_modules() -> None:
    modules, graph = _graph()
    # A package's __init__ names its children (a registry's lines): the edges that matter
    # are between modules, as the project's layers run.
    graph = {m: set() if modules[m].name == "__init__.py" else deps for m, deps in graph.items()}
    assert _cycles(graph) == []


def test_the_checkers_see_what_they_should(tmp_path: Path) -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    known = {"tasks.train", "tasks", "models.registry", "models"}
    path = tmp_path / "probe.py"  # a lazy import, and a module named in a string
    path.write_text('def f():\n    from models import registry\n'
                    'WORK = "tasks.train:train_model"\n')
    assert _imports("flows.x", path, known) == {"models", "models.registry", "tasks.train"}


def _string_constants(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.value for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


@pytest.mark.parametrize("stage", STAGE_MODULES)
def test_stage_modules_name_no_plugin(stage: str) -> None:
    plugins = set(features.names()) | set(sources.names()) | set(layouts.names())
    plugins -= {"text"}  # the text modality shares its name with its one feature set
    path = ROOT / "tasks" / f"{stage}.py"
    if not path.is_file():
        path = ROOT / "tasks" / stage / "__init__.py"
    named = set()
    for file in [path, *path.parent.glob("*.py")] if path.name == "__init__.py" else [path]:
        named |= _string_constants(file) & plugins
    assert not named, f"tasks/{stage} names {sorted(named)}: go through the registry"


def test_registries_share_one_verb_set_and_list_names_without_importing_plugins() -> None:
    from models import registry

    code = ("import sys; from tasks import features, sources; from tasks.sources import "
            "layouts; from models import registry; "
            "print(features.names('audio'), features.names('vision'), sources.names(), "
            "layouts.names(), registry.names()); "
            "print(sorted(m for m in sys.modules if m.startswith(('tasks.features.', "
            "'tasks.sources.', 'models.')) and m.count('.') >= 2))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout.splitlines()
    assert out[0] == ("['egemaps', 'librosa'] ['facemesh', 'openface'] ['csd', 'mmsa_pkl', "
                      "'raw'] ['folder', 'iemocap', 'meld', 'mmsa'] ['dashfusion', "
                      "'fasca_net', 'late_fusion', 'unimodal_audio', 'unimodal_text', "
                      "'unimodal_vision']")
    assert out[1] == "['tasks.sources.layouts']"  # a registry, no plugin
    for module in (features, sources, layouts, registry):
        assert {"names", "get", "register"} <= set(dir(module)), module.__name__
    for name in features.names():
        chosen = features.get(name)
        assert chosen.name == name and chosen.outputs
    for name in sources.names():
        assert sources.get(name).name == name
    assert sources.get("raw").media and not sources.get("csd").media
    for name in registry.names():
        assert registry.get(name).name == name
    with pytest.raises(KeyError, match="unknown feature set 'nope'"):
        features.get("nope")


def test_params_validation_imports_no_heavy_package() -> None:
    code = ("import sys; from tasks.params import load_params; load_params('params.yaml'); "
            "print(sorted(m for m in ('torch', 'lightning', 'sklearn', 'prefect', 'mediapipe', "
            "'transformers', 'h5py') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- the stage table


def test_stage_table_and_dvc_yaml_agree() -> None:
    order = [s.name for s in stages.order(ROOT / "dvc.yaml")]
    assert order == ["code", "demo", "ingest", "extract", "cache", "train", "evaluate",
                     "robustness", "report"]
    doc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for stage in stages.STAGES:
        entry = doc[stage.name]
        assert ("foreach" in entry) == stage.per_model, stage.name
        cmd = (entry.get("do") or entry)["cmd"]
        assert cmd == f"msaflow {stage.name}" + (" ${item}" if stage.per_model else "")
        assert callable(stage.function())


def test_a_stage_added_to_the_table_shows_up_in_the_cli_flows_and_pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows import pipeline
    from flows.stages import run_stage, stage_flow
    from msaflow.cli import build_parser

    hello = stages.Stage("hello", "say hello to the dataset", "tests.test_architecture:hello")
    monkeypatch.setattr(stages, "STAGES", (*stages.STAGES[:5], hello, *stages.STAGES[5:]))
    doc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    listed = list(doc["stages"].items())
    doc["stages"] = dict([*listed[:5], ("hello", {"cmd": "msaflow hello"}), *listed[5:]])
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))

    parser = build_parser()
    assert parser.parse_args(["hello"]).command == "hello"
    assert "say hello to the dataset" in parser.format_help()
    assert stage_flow("hello").name == "hello"
    assert run_stage("hello", str(ROOT / "params.yaml"))["greeted"] == "demo"
    steps = pipeline.plan(str(ROOT / "params.yaml"), dvc_yaml=str(tmp_path / "dvc.yaml"))
    names = [s for s, _ in steps]
    assert names.index("cache") < names.index("hello") < names.index("train")
    assert ("train", "fasca_net") in steps and names.count("hello") == 1


def hello(params, paths) -> dict:
    """The work function of the stage the test above adds."""
    return {"greeted": params.dataset.name}


def test_top_level_packages_run_no_code_on_import() -> None:
    """Their ``__init__`` is a docstring (msaflow's adds its version): a stage's deps need
    not list them."""
    for package in LAYERS:
        tree = ast.parse((ROOT / package / "__init__.py").read_text(encoding="utf-8"))
        body = tree.body[1:] if ast.get_docstring(tree) else tree.body
        assert all(isinstance(n, ast.Assign) and n.targets[0].id == "__version__"
                   for n in body), package


def test_each_stage_depends_on_its_own_code_and_no_module_by_hand() -> None:
    """dvc.yaml: the `code` stage depends on the code packages; every other stage on its own
    data/code/<stage>.json and on no project module directly."""
    doc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert doc["code"]["deps"] == list(codedeps.CODE)
    for stage in stages.STAGES[1:]:
        deps = (doc[stage.name].get("do") or doc[stage.name])["deps"]
        assert f"data/code/{stage.name}.json" in deps, stage.name
        assert not [d for d in deps if d.split("/")[0] in LAYERS], stage.name


def test_a_stages_code_is_what_its_work_reaches(tmp_path: Path) -> None:
    """Lazy imports and registry lines count; the wiring and other stages' modules do not;
    editing a module changes the hashes of exactly the stages that run it."""
    works = {s.name: s.work for s in stages.STAGES if s.name != "code"}
    code = codedeps.stage_code(ROOT, works)
    assert set(code) == {s.name for s in stages.STAGES} - {"code"}
    assert "tasks/report/html.py" in code["report"]  # imported inside write_report
    assert "tasks/features/librosa.py" in code["extract"]  # a registry line
    assert "models/fasca_net/model.py" in code["train"]  # a registry line
    assert not any(p.startswith(("runtime/", "flows/", "msaflow/")) for c in code.values()
                   for p in c)
    assert "tasks/extract.py" not in code["report"] and "tasks/report/html.py" not in \
        code["extract"]
    assert not any(p in ("config/__init__.py", "tasks/__init__.py") for c in code.values()
                   for p in c)
    copy = tmp_path / "repo"
    for package in codedeps.CODE:
        shutil.copytree(ROOT / package, copy / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    assert codedeps.stage_code(copy, works) == code
    html = copy / "tasks/report/html.py"
    html.write_text(html.read_text() + "\n# an edit\n")
    changed = {s for s, files in codedeps.stage_code(copy, works).items() if files != code[s]}
    assert changed == {"report"}


# --------------------------------------------------------------------------- plugins


PLUGIN = '''
"""A user's audio feature set: frame RMS energy, one row per extract.audio.hop_seconds."""

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tasks.features import options, register
from tasks.features.media import decode_audio


class RmsParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    floor: float = Field(0.0, ge=0)  # energies below this read as 0


@register("rms", modality="audio", keys=("sample_rate", "hop_seconds", "floor"),
          description="RMS energy per hop", dims=lambda section, width: ["rms"],
          params=RmsParams)
def compute(clip, section):
    y = decode_audio(clip.media, section.sample_rate, clip.start, clip.end)
    hop = int(section.hop_seconds * section.sample_rate)
    n = max(1, len(y) // hop)
    frames = y[: n * hop].reshape(n, hop)
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(1, keepdims=True)).astype(np.float32)
    rms[rms < options(section, "rms").floor] = 0.0
    starts = np.arange(n) * section.hop_seconds
    return {"features": rms, "intervals": np.stack([starts, starts + section.hop_seconds], 1)}, []
'''


def test_a_new_feature_set_with_settings_is_one_file_and_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    from config.errors import ParamsError
    from config.paths import Paths
    from tasks import extract
    from tasks.contracts import write_manifest
    from tasks.formats.csd import read_csd
    from tasks.params import load_params
    from tests.tasks.features.test_media import make_mp4

    (tmp_path / "my_rms.py").write_text(PLUGIN)  # the new file ...
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(features.LINES, "rms", ("audio", "my_rms"))  # ... and its line
    params_file = ROOT / "params.yaml"
    with pytest.raises(ParamsError, match="extract.vision.feature_set: unknown vision"):
        load_params(params_file, {"extract.vision.feature_set": "rms"})
    raw = yaml.safe_load(params_file.read_text())
    raw["extract"]["audio"].update(feature_set="rms", rms={"floor": -1})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=r"extract\.audio\.rms\.floor: Input should be"):
        load_params(tmp_path / "params.yaml")
    raw["extract"]["audio"]["rms"] = {"floor": 0.001}
    raw["extract"]["workers"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    params = load_params(tmp_path / "params.yaml")
    assert params.extract.audio.rms.floor == 0.001  # typed: the plugin's own model
    paths = Paths.from_params(params, base=tmp_path)
    clip = make_mp4(tmp_path / "c.mp4", seconds=1.0)
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
        assert csd.metadata["extractor params"]["audio"] == {
            "feature_set": "rms", "sample_rate": 16000, "hop_seconds": 0.04, "floor": 0.001}
