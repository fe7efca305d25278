"""Stage `robustness`: the corruptions themselves, and the stage on two trained seeds."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from config.errors import ParamsError
from tasks.evaluate import evaluate_model
from tasks.formats.dataset import H5Dataset
from tasks.params import load_params
from tasks.report import robustness_table, summary_markdown, write_report
from tasks.report.plots import robustness_frames
from tasks.robustness import Condition, conditions, corrupt, evaluate_robustness
from tasks.train import train_model
from tasks.training import checkpoint
from tests.tasks.test_train import PARAMS, make_setup

UNK = 100
SMALL = {"robustness.rates": [0.0, 0.5, 0.9], "robustness.levels": [0.0, 0.5],
         "robustness.draws": 2}


def _batch(n: int = 4, seed: int = 0) -> dict:
    """A batch as the loader gives it: real rows first, zero padding masked off."""
    g = torch.Generator().manual_seed(seed)
    lengths = {"text": [6, 4, 8, 3], "words": [4, 2, 6, 1], "audio": [10, 3, 12, 7],
               "vision": [5, 1, 6, 4]}
    out: dict = {}
    ids = torch.zeros(n, 8, dtype=torch.long)
    for i, k in enumerate(lengths["text"]):
        ids[i, :k] = torch.randint(1000, 2000, (k,), generator=g)
        ids[i, 0], ids[i, k - 1] = 101, 102  # [CLS] ... [SEP]
    out["text_ids"] = ids
    out["text_mask"] = torch.arange(8)[None, :] < torch.tensor(lengths["text"])[:, None]
    for s, (length, dim) in {"words": (6, 5), "audio": (12, 3), "vision": (6, 4)}.items():
        mask = torch.arange(length)[None, :] < torch.tensor(lengths[s])[:, None]
        out[s] = torch.randn(n, length, dim, generator=g) * mask[..., None]
        out[f"{s}_mask"] = mask
    return out


def _std() -> dict[str, torch.Tensor]:
    return {"audio": torch.full((3,), 2.0), "vision": torch.full((4,), 0.5)}


def test_absent_text_is_an_empty_transcript_and_streams_are_masked() -> None:
    batch = _batch()
    out = corrupt(batch, Condition("absent", ("text", "vision")), torch.Generator(), UNK, _std())
    assert out["text_ids"][:, :2].tolist() == [[101, 102]] * 4
    assert not out["text_ids"][:, 2:].any() and out["text_mask"].sum(1).tolist() == [2] * 4
    for s in ("words", "vision"):
        assert not out[s].any() and not out[f"{s}_mask"].any()
    assert torch.equal(out["audio"], batch["audio"])  # the other modality untouched
    assert torch.equal(out["audio_mask"], batch["audio_mask"])


def test_missing_rate_masks_tokens_and_zeroes_real_rows_only() -> None:
    batch = _batch()
    out = corrupt(batch, Condition("missing", level=0.5), torch.Generator().manual_seed(3),
                  UNK, _std())
    ids, mask = out["text_ids"], out["text_mask"]
    assert torch.equal(mask, batch["text_mask"])  # lengths stay
    n = mask.sum(1)
    for i in range(4):  # [CLS] and [SEP] are never masked; padding stays padding
        assert ids[i, 0] == 101 and ids[i, n[i] - 1] == 102 and not ids[i, n[i]:].any()
    hit = ids == UNK
    assert 0 < hit.sum() < (n - 2).sum()
    for s in ("words", "audio", "vision"):
        zeroed = (out[s] == 0).all(-1) & batch[f"{s}_mask"]
        assert zeroed.any() and torch.equal(out[f"{s}_mask"], batch[f"{s}_mask"])
        kept = ~zeroed & batch[f"{s}_mask"]
        assert torch.equal(out[s][kept], batch[s][kept])
    again = corrupt(batch, Condition("missing", level=0.5), torch.Generator().manual_seed(3),
                    UNK, _std())
    assert all(torch.equal(again[k], out[k]) for k in out)  # same seed, same draw
    clean = corrupt(batch, Condition("missing", level=0.0), torch.Generator(), UNK, _std())
    assert all(torch.equal(clean[k], batch[k]) for k in batch)


def test_noise_follows_train_std_on_real_frames() -> None:
    batch = _batch()
    deltas: dict[str, list[torch.Tensor]] = {"audio": [], "vision": []}
    for seed in range(20):
        out = corrupt(batch, Condition("noise", ("audio", "vision"), 0.5),
                      torch.Generator().manual_seed(seed), UNK, _std())
        for s in deltas:
            delta = out[s] - batch[s]
            real = batch[f"{s}_mask"]
            assert not delta[~real].any()  # padding stays zero
            deltas[s].append(delta[real])
        for k in ("text_ids", "words", "audio_mask", "vision_mask"):
            assert torch.equal(out[k], batch[k])
    for s, sd in (("audio", 2.0), ("vision", 0.5)):  # std = level x the feature's train std
        assert torch.cat(deltas[s]).std().item() == pytest.approx(0.5 * sd, rel=0.1)


def test_condition_grid_and_params_validation() -> None:
    params = load_params(PARAMS, overrides=SMALL)
    names = [c.name for c in conditions(params)]
    assert names[:7] == ["absent:text", "absent:audio", "absent:vision", "absent:text+audio",
                         "absent:text+vision", "absent:audio+vision",
                         "absent:text+audio+vision"]
    assert names[7:] == ["missing:0", "missing:0.5", "missing:0.9", "noise:0", "noise:0.5"]
    for key, value, expected in [
        ("robustness.rates", [0.5, 0.1], "increasing distinct rates"),
        ("robustness.rates", [0.0, 1.0], "increasing distinct rates in \\[0, 1\\)"),
        ("robustness.levels", [-0.1], "levels >= 0"),
        ("robustness.draws", 0, "robustness.draws"),
        ("robustness.reference", "nope", "robustness.reference: 'nope' has no section"),
    ]:
        with pytest.raises(ParamsError, match=expected):
            load_params(PARAMS, overrides={key: value})


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory):
    """late_fusion, two seeds, evaluated; then the robustness stage on a small grid."""
    torch.set_num_threads(1)
    params, paths = make_setup(tmp_path_factory.mktemp("robustness"), **SMALL)
    train_model(params, paths, "late_fusion")
    evaluate_model(params, paths, "late_fusion")
    summary = evaluate_robustness(params, paths, "late_fusion")
    return params, paths, summary


def test_rate_zero_is_evaluate_exactly(scored) -> None:
    _, paths, summary = scored
    report = paths.report("late_fusion")
    metrics = json.loads((report / "metrics.json").read_text())
    doc = json.loads((report / "robustness.json").read_text())
    for split in ("valid", "test"):
        for name in ("missing:0", "noise:0"):
            cell = doc["conditions"][name][split]
            for key, value in metrics[split].items():
                assert cell[key] == value, (name, split, key)
    assert summary["clean"] == metrics["test"]["Has0_acc_2"]
    assert doc["headline"] == "Has0_acc_2" and doc["seeds"] == 2 and doc["draws"] == 2
    assert set(doc["conditions"]) == {c.name for c in conditions(scored[0])}


def test_same_seed_same_numbers_and_curves(scored) -> None:
    params, paths, _ = scored
    report = paths.report("late_fusion")
    written = [report / "robustness.json", paths.clip_conditions("late_fusion")]
    first = {p: p.read_bytes() for p in written}
    evaluate_robustness(params, paths, "late_fusion")
    assert {p: p.read_bytes() for p in written} == first
    doc = json.loads(first[report / "robustness.json"])
    # the report's curves: each model a series, the robustness metric on test
    frames = robustness_frames(params, paths)
    for kind, axis, grid in (("missing", "rate", [0.0, 0.5, 0.9]),
                             ("noise", "level", [0.0, 0.5])):
        frame = frames[kind]
        assert list(frame.columns) == [axis, "accuracy", "series"]
        assert frame[axis].tolist() == grid and set(frame["series"]) == {"late_fusion"}
        expected = [doc["conditions"][f"{kind}:{v:g}"]["test"]["Has0_acc_2"] for v in grid]
        np.testing.assert_allclose(frame["accuracy"], expected, atol=1e-6)
    # a drawn condition averages seeds x draws: its std is over those 4 runs
    assert doc["conditions"]["missing:0.9"]["test"]["MAE_std"] is not None
    # another seed, other draws
    other = params.model_copy(update={"robustness": params.robustness.model_copy(
        update={"seed": 1})})
    evaluate_robustness(other, paths, "late_fusion")
    changed = json.loads((report / "robustness.json").read_text())
    assert changed["conditions"]["missing:0.9"] != doc["conditions"]["missing:0.9"]
    assert changed["conditions"]["absent:audio"] == doc["conditions"]["absent:audio"]
    evaluate_robustness(params, paths, "late_fusion")  # back, for the other tests


def test_headline_and_clip_conditions(scored) -> None:
    """The report's headline file: evaluate's headline metrics on test (the first on valid)
    and the two relative robustness figures, nothing else; clip_conditions.csv: every clip of
    each split, clean (= evaluate's mean prediction) and with each modality absent."""
    params, paths, summary = scored
    report = paths.report("late_fusion")
    metrics = json.loads((report / "metrics.json").read_text())
    write_report(params, paths)
    assert sorted(p.name for p in paths.headlines.iterdir()) == ["late_fusion.json"]
    head = json.loads(paths.headline("late_fusion").read_text())
    assert head == {
        "test": {k: metrics["test"][k] for k in ("MAE", "Has0_acc_2")},
        "valid": {"MAE": metrics["valid"]["MAE"]},
        "robustness": {"relative_missing": summary["relative_missing"],
                       "relative_noise": summary["relative_noise"]},
    }
    clips = pd.read_csv(paths.clip_conditions("late_fusion"), dtype={"clip_id": str})
    assert set(clips["condition"]) == {"clean", "absent:text", "absent:audio", "absent:vision"}
    assert clips.groupby(["split", "condition"]).size().to_dict() == {
        (s, c): n for s, n in (("valid", 16), ("test", 16)) for c in set(clips["condition"])}
    pred = pd.read_csv(report / "predictions.csv", dtype={"clip_id": str})
    mean = pred[pred["split"] == "test"].groupby("clip_id")["y_pred"].mean()
    clean = clips[(clips["split"] == "test") & (clips["condition"] == "clean")]
    np.testing.assert_allclose(clean.set_index("clip_id")["prediction"].loc[mean.index],
                               mean, atol=1e-4)


def test_all_absent_is_the_constant_input_prediction(scored) -> None:
    params, paths, _ = scored
    everything = Condition("absent")
    test = H5Dataset(paths.h5("unaligned"), "test")
    labels = np.array([float(test[i]["label"]) for i in range(len(test))])
    accuracies = []
    for seed in (0, 1):
        net, _ = checkpoint.load(paths.checkpoints("late_fusion") / f"seed{seed}.ckpt")
        preds = []
        for split in ("valid", "test"):
            data = H5Dataset(paths.h5("unaligned"), split)
            _, _, out = checkpoint.forward(
                net, data,
                transform=lambda b: corrupt(b, everything, torch.Generator(), UNK, {}))
            preds.append(out)
        constant = np.concatenate(preds)
        assert np.allclose(constant, constant[0], atol=1e-6)  # one prediction for every clip
        accuracies.append(np.mean((labels >= 0) == (constant[0] >= 0)))  # Has0's sides
    doc = json.loads((paths.report("late_fusion") / "robustness.json").read_text())
    cell = doc["conditions"]["absent:text+audio+vision"]["test"]
    assert cell["Corr"] is None  # undefined for a constant prediction
    assert cell["Has0_acc_2"] == pytest.approx(np.mean(accuracies))
    assert doc["summary"]["absent_all"] == cell["Has0_acc_2"]


def test_summary_table_and_figure(scored) -> None:
    params, paths, _ = scored
    table = summary_markdown(params, paths)
    assert "robustness (Has0_acc_2, test split" in table
    row = next(line for line in table.splitlines() if line.startswith("| late_fusion |")
               and "±" not in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    doc = json.loads((paths.report("late_fusion") / "robustness.json").read_text())
    assert cells[1] == f"{doc['summary']['clean']:.4f}"
    assert cells[-2:] == ["0.0000", "0.0000"]  # late_fusion against itself
    png = paths.robustness_figure
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert robustness_table(params, paths)[1]["late_fusion"]["effective_noise"] == 0.0
