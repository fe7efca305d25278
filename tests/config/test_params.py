"""params.yaml validation: every bad key is named."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from config.errors import ParamsError
from config.load import set_dotted
from tasks.params import load_params, parse_params

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def raw() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_repo_params_are_valid() -> None:
    params = load_params(ROOT / "params.yaml")
    assert params.dataset.name == "demo"
    assert set(params.train.models) <= set(params.models)


def test_params_are_frozen(raw: dict) -> None:
    params = parse_params(raw)
    with pytest.raises(ValidationError):
        params.seed = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("extract.audio.sample_rate", "fast", "extract.audio.sample_rate"),
        ("train.batch_size", 0, "train.batch_size"),
        ("demo.split", [0.5, 0.5, 0.5], "demo.split"),
        ("dataset.task", "ranking", "dataset.task"),
        ("dataset.label_range", [3, -3], "dataset.label_range"),
        ("cache.variants", [], "cache.variants"),
        ("train.models", ["nope"], "nope"),
    ],
)
def test_bad_values_name_the_key(raw: dict, key: str, value: object, needle: str) -> None:
    set_dotted(raw, key, value)
    with pytest.raises(ParamsError, match=needle.replace(".", r"\.")):
        parse_params(raw)


def test_unknown_key_is_named(raw: dict) -> None:
    raw["extract"]["audio"]["sampel_rate"] = 16000
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    assert "extract.audio.sampel_rate: unknown key" in str(err.value)


def test_missing_key_is_named(raw: dict) -> None:
    bad = copy.deepcopy(raw)
    del bad["train"]["seeds"]
    with pytest.raises(ParamsError, match=r"train\.seeds: required key is missing"):
        parse_params(bad)


def test_override_and_missing_file(tmp_path: Path) -> None:
    params = load_params(ROOT / "params.yaml", overrides={"train.max_epochs": 3})
    assert params.train.max_epochs == 3
    with pytest.raises(ParamsError, match="not a section"):
        load_params(ROOT / "params.yaml", overrides={"seed.x": 1})
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


def test_a_feature_sets_own_settings_are_its_section(raw: dict) -> None:
    """extract.vision.<set>: each feature set's own settings, typed by its own model."""
    vision = parse_params(raw).extract.vision
    assert (vision.openface.bin, vision.openface.timeout) == ("", 600.0)  # "" = on PATH
    assert vision.facemesh.max_side == 640
    set_dotted(raw, "extract.vision.feature_set", "openface")
    set_dotted(raw, "extract.vision.openface.bin", "/opt/OpenFace/build/bin/FeatureExtraction")
    vision = parse_params(raw).extract.vision
    assert vision.feature_set == "openface" and vision.openface.bin.endswith("Extraction")
    for key, value in [("feature_set", "openfce"), ("openface.timeout", 0),
                       ("openface.bin", 5), ("openface.binary", "x"), ("facemesh.max_side", 8)]:
        bad = copy.deepcopy(raw)
        set_dotted(bad, f"extract.vision.{key}", value)
        with pytest.raises(ParamsError, match=rf"extract\.vision\.{key}"):
            parse_params(bad)
    for key, value, needle in [("max_side", 640, r"extract\.vision\.max_side: unknown key"),
                               ("librosa", {}, r"extract\.vision\.librosa: unknown key")]:
        bad = copy.deepcopy(raw)
        bad["extract"]["vision"][key] = value
        with pytest.raises(ParamsError, match=needle):
            parse_params(bad)
    set_dotted(raw, "extract.vision.feature_set", "facemesh")
    del raw["extract"]["vision"]["facemesh"]  # the chosen set's defaults then
    assert parse_params(raw).extract.vision.facemesh.max_side == 640


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("dataset.source", "hdf5", r"dataset\.source: unknown source 'hdf5'; expected one of"),
        ("dataset.layout", "mosi", r"dataset\.layout: unknown layout 'mosi'"),
        ("dataset.target", "emotion", r"dataset\.target: 'emotion' does not apply to layout"),
        ("extract.audio.feature_set", "facemesh", r"extract\.audio\.feature_set: unknown audio"),
        ("models.fasca_net.hiddn", 3, r"models\.fasca_net\.hiddn: unknown key"),
        ("models.dashfusion.heads", 3.5, r"models\.dashfusion\.heads: Input should be a valid "
                                         "integer"),
        ("models.late_fusion.lr", "fast", r"models\.late_fusion\.lr: Input should be a valid"),
    ],
)
def test_registry_names_and_model_sections_checked_on_load(
    raw: dict, key: str, value: object, needle: str
) -> None:
    # Names a registry owns (source, layout, feature set, a model's keys) are checked by it.
    set_dotted(raw, key, value)
    with pytest.raises(ParamsError, match=needle):
        parse_params(raw)


def test_every_problem_is_listed_at_once(raw: dict) -> None:
    set_dotted(raw, "dataset.source", "hdf5")
    set_dotted(raw, "models.fasca_net.hiddn", 3)
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    lines = str(err.value).splitlines()
    assert lines[0].endswith("invalid params") and len(lines) == 3
