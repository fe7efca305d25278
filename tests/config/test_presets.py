"""Dataset presets (``auto`` in params.yaml), model presets and ``train.class_weights``."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
import yaml

from config.errors import ParamsError
from config.paths import Paths
from config.presets import COVERED, PRESETS, known
from models.base import DataSpec
from tasks.formats.dataset import H5Dataset, collate, read_spec
from tasks.params import load_params, parse_params
from tasks.sources.csd import CsdParams
from tasks.train import balanced_class_weights, class_weights, params_hash, train_model
from tasks.training.checkpoint import load as load_checkpoint
from tasks.training.settings import resolve_model, variant_note
from tests.synthetic import make_h5

ROOT = Path(__file__).resolve().parents[2]
PARAMS = ROOT / "params.yaml"

# params.yaml's explicit model sections before presets filled them: the demo's numbers were
# obtained with exactly these, so the `auto` presets must resolve to the same settings.
TODAY = {
    "dashfusion": {
        "variant": "unaligned", "lr": 5.0e-5, "head_lr": 5.0e-4, "batch_size": 16,
        "warmup_epochs": 1, "max_epochs": 15, "encoder_layers": 1, "hbf_depth": 2,
        "pair_source": "bank", "encoder_layer_dropout": 0.1, "hbf_out_proj": True,
    },
    "fasca_net": {
        "variant": "aligned", "lr": 1.0e-3, "batch_size": 16, "max_epochs": 40, "patience": 10,
        "weight_decay": 1.0e-3, "warmup_epochs": 0, "hidden": 128, "heads": 4,
        "align_channels": 64, "aux_hidden": 32, "aux_layers": 1, "head_hidden": 128,
        "cme_ffn_norm": True,
    },
}


def _get(params: Any, dotted: str) -> Any:
    node = params
    for part in dotted.split("."):
        node = getattr(node, part)
    return list(node) if isinstance(node, tuple) else node


# --- dataset presets ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["demo", "mosi", "mosei", "sims", "meld", "iemocap"])
def test_auto_takes_the_preset_named_by_the_dataset(name: str) -> None:
    params = load_params(PARAMS, overrides={"dataset.name": name})
    assert params.dataset.preset == name
    for key, value in PRESETS[name].values.items():
        assert _get(params, key) == value, key
    assert params.dataset.target == "auto"  # target keeps its own auto (resolved by ingest)


def test_mosei_gets_its_official_files_and_folds() -> None:
    csd = load_params(PARAMS, overrides={"dataset.name": "MOSEI"}).dataset.csd
    assert (csd.words, csd.word_vectors, csd.audio, csd.vision, csd.labels, csd.folds) == (
        "CMU_MOSEI_TimestampedWords.csd", "CMU_MOSEI_TimestampedWordVectors.csd",
        "CMU_MOSEI_COVAREP.csd", "CMU_MOSEI_VisualFacet42.csd", "CMU_MOSEI_Labels.csd",
        "mosei",
    )


def test_explicit_values_and_an_explicit_preset_win() -> None:
    over = {
        "dataset.name": "mosei",
        "cache.seq_len.audio": 300,
        "dataset.label_range": [-1, 1],
        "dataset.csd.labels": "CMU_MOSEI_LabelsSentiment.csd",
    }
    params = load_params(PARAMS, overrides=over)
    # [-1, 1] makes it a SIMS-style task, where FASCA-Net's preset metric (Has0_acc_2) does
    # not exist: the preset's choice gives way to the task's default; a written one is an error
    assert resolve_model(params, "fasca_net")[0].select == "auto"
    with pytest.raises(ParamsError, match=r"models\.fasca_net\.select: 'Has0_acc_2' is not"):
        load_params(PARAMS, overrides={**over, "models.fasca_net.select": "Has0_acc_2"})
    assert params.cache.seq_len.audio == 300 and params.cache.seq_len.words == 50
    assert params.dataset.label_range == (-1.0, 1.0)
    assert params.dataset.csd.labels == "CMU_MOSEI_LabelsSentiment.csd"
    assert params.dataset.csd.words == "CMU_MOSEI_TimestampedWords.csd"
    # A name that is no preset, with the preset named explicitly.
    glove = load_params(PARAMS, overrides={"dataset.name": "mosi_glove", "dataset.preset": "mosi"})
    assert glove.dataset.preset == "mosi" and glove.cache.seq_len.audio == 500
    assert glove.dataset.csd.labels == "CMU_MOSI_Opinion_Labels.csd"


def test_unknown_preset_names_the_key_and_the_choices() -> None:
    with pytest.raises(ParamsError, match=r"dataset\.preset: unknown preset 'mosi2'") as err:
        load_params(PARAMS, overrides={"dataset.preset": "mosi2"})
    assert str(known()) in str(err.value)


def test_other_names_fall_back_to_generic() -> None:
    params = load_params(PARAMS, overrides={"dataset.name": "my_videos", "dataset.root": "x"})
    assert params.dataset.preset == "generic"
    assert params.dataset.layout == "folder" and params.dataset.task == "regression"
    assert params.cache.seq_len.model_dump() == {"words": 50, "audio": 250, "vision": 60}
    # generic has no CMU file names: an `auto` it does not cover keeps the schema default.
    assert params.dataset.csd == CsdParams()


def test_resolution_leaves_the_raw_mapping_alone() -> None:
    raw = yaml.safe_load(PARAMS.read_text())
    before = copy.deepcopy(raw)
    parse_params(raw)
    assert raw == before
    # Every covered key of the repo's params.yaml says auto.
    for key in COVERED:
        node = raw
        for part in key.split("."):
            node = node[part]
        assert node == "auto", key


# --- model presets ------------------------------------------------------------------------


def test_model_preset_sits_between_train_defaults_and_written_keys() -> None:
    params = load_params(PARAMS, overrides={
        "dataset.name": "mosei",
        "train.max_epochs": 3,
        "train.patience": 5,
        "models.dashfusion": {"preset": "auto", "lr": 1e-4, "hbf_depth": 2},
    })
    settings, config = resolve_model(params, "dashfusion")
    assert settings.preset == "mosei"
    assert settings.lr == 1e-4 and config.hbf_depth == 2  # written keys win
    assert settings.batch_size == 8 and settings.max_epochs == 125  # preset over train.*
    assert config.encoder_layers == 4
    assert settings.patience == 125  # the authors train every epoch: in the preset
    assert settings.weight_decay == 1e-3  # not in the preset: train.*
    # A model without presets keeps train.* (auto = none).
    text, _ = resolve_model(params, "unimodal_text")
    assert text.preset is None and text.max_epochs == 3


def test_model_preset_names_none_and_missing_entries() -> None:
    base = {"dataset.name": "meld"}
    params = load_params(PARAMS, overrides=base)
    dash, dash_cfg = resolve_model(params, "dashfusion")
    assert dash.preset is None and dash.lr == params.train.lr  # no meld entry: none
    assert dash_cfg.encoder_layers == 2
    fasca, _ = resolve_model(params, "fasca_net")
    assert fasca.preset == "meld" and fasca.lr == 2e-4 and fasca.variant == "aligned"
    for off in ("none", None):
        p = load_params(PARAMS, overrides={"models.fasca_net": {"preset": off}})
        settings, config = resolve_model(p, "fasca_net")
        assert settings.preset is None and config.hidden == 256
    named = load_params(PARAMS, overrides={"models.dashfusion.preset": "mosei"})
    assert resolve_model(named, "dashfusion")[0].batch_size == 8


def test_bad_model_presets_name_the_key() -> None:
    with pytest.raises(ParamsError, match=r"models\.dashfusion\.preset: unknown preset 'meld'"):
        load_params(PARAMS, overrides={"models.dashfusion.preset": "meld"})
    # A preset's variant that is not cached: the model runs on the cached one, and says so.
    params = load_params(
        PARAMS, overrides={"dataset.name": "mosi", "cache.variants": ["unaligned"]}
    )
    assert resolve_model(params, "fasca_net")[0].variant == "unaligned"
    assert "its preset 'mosi' asks for the 'aligned' variant" in variant_note(params, "fasca_net")
    # A variant written in models.<name> that is not cached names the key.
    params = load_params(PARAMS, overrides={"cache.variants": ["unaligned"],
                                            "models.late_fusion.variant": "aligned"})
    with pytest.raises(ParamsError, match=r"models\.late_fusion\.variant: 'aligned' is not "
                       r"cached"):
        resolve_model(params, "late_fusion")


@pytest.mark.parametrize("model", sorted(TODAY))
def test_demo_presets_resolve_to_todays_explicit_settings(model: str) -> None:
    params = load_params(PARAMS)
    assert params.models[model] == {"preset": "auto"}
    explicit = load_params(PARAMS, overrides={f"models.{model}": {**TODAY[model], "preset": None}})
    settings, config = resolve_model(params, model)
    old_settings, old_config = resolve_model(explicit, model)
    assert settings.preset == "demo" and old_settings.preset is None
    assert settings.model_copy(update={"preset": None}) == old_settings
    assert config == old_config
    # Same hash, so the demo's trained seeds stay up to date.
    spec = DataSpec(variant=settings.variant, task="regression", dims={}, seq_len={},
                    extra={"input_hash": "x"})
    assert params_hash(model, config, settings, 0, spec) == params_hash(
        model, old_config, old_settings, 0, spec
    )


def test_demo_dataset_keys_are_todays() -> None:
    d = load_params(PARAMS).dataset
    assert (d.preset, d.task, d.label_range, d.layout) == ("demo", "regression", (-3.0, 3.0),
                                                           "mmsa")
    assert d.csd == CsdParams()
    assert load_params(PARAMS).cache.seq_len.model_dump() == {"words": 24, "audio": 100,
                                                               "vision": 24}


# --- class weights ------------------------------------------------------------------------


def test_balanced_weights_are_inverse_frequency_with_mean_one() -> None:
    labels = np.array([0, 0, 0, 1, -1, 2, 2, 2, 2, 2, 2])  # counts 3, 1, 6; -1 unknown
    w = balanced_class_weights(labels, ["a", "b", "c"], "t")
    np.testing.assert_allclose(w, [2 / 3, 2.0, 1 / 3])
    with pytest.warns(UserWarning, match=r"t: .*\['c'\]"):
        w = balanced_class_weights(np.array([0, 0, 1]), ["a", "b", "c"], "t")
    np.testing.assert_allclose(w, [2 / 3, 4 / 3, 0.0])


def _cls_params(**over: Any):
    return load_params(PARAMS, overrides={
        "dataset.task": "classification", "train.max_epochs": 1, "train.seeds": [0],
        "train.accelerator": "cpu", **over,
    })


def test_class_weights_read_the_train_split(tmp_path: Path) -> None:
    h5 = make_h5(tmp_path / "c.h5", task="classification", num_classes=3, n=(40, 8, 8))
    spec = read_spec(h5)
    with h5py.File(h5, "r") as f:
        counts = np.bincount(f["train/label_class"][()], minlength=3)
    assert (counts > 0).all()
    w = np.array(class_weights(_cls_params(**{"train.class_weights": "balanced"}), h5, spec))
    assert w.mean() == pytest.approx(1.0)
    np.testing.assert_allclose(w * counts, (w * counts)[0])  # ∝ 1 / count
    assert class_weights(_cls_params(), h5, spec) is None
    given = _cls_params(**{"train.class_weights": [1, 2, 3]})
    assert class_weights(given, h5, spec) == [1.0, 2.0, 3.0]
    wrong = _cls_params(**{"train.class_weights": [1, 2]})
    with pytest.raises(ParamsError, match=r"train\.class_weights: expected 3 weights.*got 2"):
        class_weights(wrong, h5, spec)


@pytest.mark.parametrize("value", ["balanced", [1.0, 2.0]])
def test_class_weights_need_classification(value: Any) -> None:
    with pytest.raises(ParamsError, match=r"train\.class_weights: .*dataset\.task is 'regres"):
        load_params(PARAMS, overrides={"train.class_weights": value})


@pytest.mark.parametrize("value", ["inverse", [1.0, -1.0], [0, 0], [], [True, 1.0]])
def test_bad_class_weights_name_the_key(value: Any) -> None:
    with pytest.raises(ParamsError, match=r"train\.class_weights: .*expected none \| balanced"):
        _cls_params(**{"train.class_weights": value})


def test_class_weights_change_the_params_hash() -> None:
    params = load_params(PARAMS)
    settings, config = resolve_model(params, "late_fusion")
    spec = DataSpec(variant="unaligned", task="classification", dims={}, seq_len={},
                    num_classes=3, extra={"input_hash": "x"})
    hashes = {
        params_hash("late_fusion", config, settings, 0, dataclasses.replace(
            spec, extra={**spec.extra, **({"class_weights": w} if w else {})}))
        for w in (None, [1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    }
    assert len(hashes) == 3


def test_weighted_training_uses_and_records_the_weights(
    tmp_path: Path, one_torch_thread: None
) -> None:
    params = _cls_params(**{"train.class_weights": "balanced"})
    paths = Paths.from_params(params, base=tmp_path)
    make_h5(paths.h5("unaligned"), task="classification", num_classes=3, n=(40, 8, 8))
    assert train_model(params, paths, "unimodal_text")["trained"] == 1
    model, ckpt = load_checkpoint(paths.checkpoints("unimodal_text") / "seed0.ckpt")
    weights = ckpt["spec"]["extra"]["class_weights"]
    assert len(weights) == 3 and sum(weights) == pytest.approx(3.0)
    batch = collate([H5Dataset(paths.h5("unaligned"), "valid")[i] for i in range(8)])
    pred = model(batch)["pred"]
    want = torch.nn.functional.cross_entropy(
        pred, batch["label_class"], weight=torch.tensor(weights)
    )
    assert torch.isclose(model.task_loss(pred, batch), want)
    # Same weights: up to date; other weights: retrained.
    assert train_model(params, paths, "unimodal_text")["trained"] == 0
    other = _cls_params(**{"train.class_weights": [1.0, 1.0, 2.0]})
    assert train_model(other, paths, "unimodal_text")["trained"] == 1


@pytest.mark.parametrize(
    ("dataset", "model", "expected"),
    [
        # docs/models.md "Against the authors' code": each paper preset's recipe
        ("mosi", "dashfusion", {"max_epochs": 100, "patience": 100, "warmup_epochs": 10,
                                "encoder_layer_dropout": 0.5, "encoder_dropout": 0.1,
                                "hbf_out_proj": False, "label_groups": "rounded"}),
        ("sims", "dashfusion", {"max_epochs": 100, "patience": 100, "label_groups": "exact"}),
        ("mosei", "dashfusion", {"max_epochs": 125, "patience": 125, "encoder_layers": 4,
                                 "hbf_depth": 3, "encoder_layer_dropout": 0.5}),
        ("mosi", "fasca_net", {"schedule": "constant", "weight_decay": 0.01, "decay_all": True,
                               "select": "Has0_acc_2", "patience": 50, "cme_ffn_norm": False}),
        ("sims", "fasca_net", {"select": "Mult_acc_2", "schedule": "constant"}),
        ("meld", "fasca_net", {"select": "auto", "decay_all": True, "patience": 40}),
        ("demo", "fasca_net", {"schedule": "linear", "weight_decay": 1e-3, "decay_all": False,
                               "select": "auto", "cme_ffn_norm": True}),
        ("demo", "dashfusion", {"encoder_layer_dropout": 0.1, "hbf_out_proj": True}),
    ],
)
def test_paper_presets_resolve_to_the_documented_recipe(dataset, model, expected) -> None:
    params = load_params(PARAMS, overrides={"dataset.name": dataset})
    settings, config = resolve_model(params, model)
    got = {**settings.model_dump(), **dataclasses.asdict(config)}
    assert {k: got[k] for k in expected} == expected
