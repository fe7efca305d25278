"""`predict` on real mp4 clips: the model input equals the cache's, JSON shape, errors, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import tasks.predict as predict_mod
from config.paths import Paths
from config.schema import PredictParams
from tasks import extract
from tasks.cache import build_cache
from tasks.demo import DEMO_WARNING
from tasks.formats.dataset import H5Dataset, collate
from tasks.metrics import polarity
from tasks.params import load_params
from tasks.predict import PredictError, predict_videos
from tasks.predict.inputs import NO_TRANSCRIPT
from tasks.robustness import Condition, corrupt
from tasks.train import train_model
from tasks.training.checkpoint import forward as evaluate_predict
from tasks.training.checkpoint import load as load_checkpoint
from tests.tasks.features.test_media import make_mp4

ROOT = Path(__file__).resolve().parents[2]
TEXTS = [
    "I love this movie",
    "this is terrible and boring",
    "it was fine i guess",
    "what a great day",
    "awful acting and a bad plot",
    "nice but far too long",
]
SPLIT_OF = ["train", "train", "train", "valid", "valid", "test"]
TINY = {
    "dataset.name": "tiny",
    "extract.workers": 2,
    "extract.vision.fps": 4,
    "extract.text.max_tokens": 6,  # some transcripts are cut: truncation is exercised
    "cache.seq_len": {"words": 5, "audio": 30, "vision": 4},
    "train.seeds": [0, 1],
    "train.max_epochs": 1,
    "train.accelerator": "cpu",
    "models.late_fusion": {"variant": "unaligned", "hidden": 16, "heads": 2, "head_hidden": 8},
    "models.fasca_net": {
        "variant": "aligned", "hidden": 16, "heads": 2, "align_channels": 8, "aux_hidden": 8,
        "aux_heads": 2, "aux_layers": 1, "head_hidden": 8,
    },
}
MODELS = {"late_fusion": "unaligned", "fasca_net": "aligned"}


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory):
    """Six real clips through extract → cache, and both models trained (2 seeds, 1 epoch)."""
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("predict")
    params = load_params(ROOT / "params.yaml", overrides=TINY)
    paths = Paths.from_params(params, base=base)
    rows = []
    for i, text in enumerate(TEXTS):
        media = make_mp4(base / f"c{i}.mp4", seconds=0.8 + 0.2 * i, fps=8, face=i % 2 == 0)
        rows.append({
            "clip_id": f"v{i}$_$0", "video_id": f"v{i}", "split": SPLIT_OF[i],
            "media": str(media), "start": "", "end": "", "text": text,
            "label": (i - 2.5) / 2, "label_class": 0 if i < 3 else 2,
            "annotation": "Negative" if i < 3 else "Positive",
        })
    paths.manifest.parent.mkdir(parents=True)
    manifest = pd.DataFrame(rows)
    manifest.to_csv(paths.manifest, index=False)
    extract.run(params, paths)
    build_cache(params, paths)
    for model in MODELS:
        train_model(params, paths, model)
    transcripts = base / "transcripts.csv"
    manifest[["media", "text"]].rename(columns={"media": "path"}).to_csv(transcripts, index=False)
    return params, paths, manifest, transcripts


def _cache_rows(h5: Path) -> dict[str, tuple[str, int]]:
    with h5py.File(h5, "r") as f:
        return {cid: (s, i) for s in ("train", "valid", "test")
                for i, cid in enumerate(f[s]["ids"].asstr()[:])}


@pytest.mark.parametrize("model", list(MODELS))
def test_cached_clip_gets_evaluate_input_and_score(
    setting, model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params, paths, manifest, transcripts = setting
    seen: list[dict] = []
    real = predict_mod.forward

    def spy(net, dataset, device="cpu"):
        if not seen:
            seen.extend(dataset[i] for i in range(len(dataset)))
        return real(net, dataset, device)

    monkeypatch.setattr(predict_mod, "forward", spy)
    doc = predict_videos(params, paths, model, list(manifest["media"]),
                         transcripts=transcripts, out=tmp_path / "p.json")
    assert doc["failed"] == 0 and doc["variant"] == MODELS[model]

    h5 = paths.h5(MODELS[model])
    where = _cache_rows(h5)
    ckpts = [paths.checkpoints(model) / f"seed{s}.ckpt" for s in (0, 1)]
    # Clips c1, c3, c5 show no face: predict scores them with vision absent, exactly as the
    # robustness stage's absent:vision condition feeds the cache's rows to the model.
    no_vision = Condition("absent", ("vision",))

    def without_vision(batch: dict) -> dict:
        return corrupt(batch, no_vision, torch.Generator(), 100, {})

    reference: dict[str, list[float]] = {cid: [] for cid in where}
    for path in ckpts:
        net, _ = load_checkpoint(path)
        for split in ("train", "valid", "test"):
            ids, _, out = evaluate_predict(net, H5Dataset(h5, split))
            _, _, absent = evaluate_predict(net, H5Dataset(h5, split), transform=without_vision)
            for cid, value, other in zip(ids, out, absent, strict=True):
                faceless = int(cid[1]) % 2 == 1
                reference[cid].append(float(other if faceless else value))

    for k, (cid, entry) in enumerate(zip(manifest["clip_id"], doc["predictions"], strict=True)):
        # The input tensors are the cache's own, bit for bit (normalised with train stats).
        split, row = where[cid]
        cached = H5Dataset(h5, split)[row]
        if k % 2 == 1:
            cached = {key: v[0] if isinstance(v, torch.Tensor) else v for key, v in
                      without_vision(collate([cached])).items()}
            assert entry["absent"] == ["vision"]
            assert any("vision absent: no face detected" in n for n in entry["notes"])
        else:
            assert entry["absent"] == []
        for key, value in seen[k].items():
            if key in ("id", "index", "label", "label_class"):
                continue
            assert torch.equal(value, cached[key]), f"{cid}: {key} differs from the cache"
        np.testing.assert_allclose(entry["seed_scores"], reference[cid], rtol=1e-5, atol=1e-6)
        assert entry["score"] == pytest.approx(np.mean(reference[cid]), rel=1e-5, abs=1e-6)
        assert entry["seeds"] == [0, 1] and entry["transcript"] == TEXTS[k]


def test_json_fields_and_per_video_errors(
    setting, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    params, paths, manifest, _ = setting
    mute = make_mp4(tmp_path / "mute.mp4", audio=None)  # nor face, nor (asr none) transcript
    videos = [manifest["media"][0], str(mute), str(tmp_path / "absent.mp4")]
    out = tmp_path / "out" / "predictions.json"
    doc = predict_videos(params, paths, "late_fusion", [videos[0]], text="I love this movie")
    default = paths.base / "predictions" / "tiny" / "late_fusion.json"  # no --out: here
    assert json.loads(default.read_text())["predictions"][0]["transcript"] == "I love this movie"
    doc = predict_videos(params, paths, "late_fusion", [videos[0]], text="I love this movie",
                         out=out)
    assert doc["predictions"][0]["transcript_source"] == "--text"
    doc = predict_videos(params, paths, "late_fusion", videos, out=out, asr="none")
    assert json.loads(out.read_text()) == json.loads(json.dumps(doc))
    assert (doc["videos"], doc["failed"], doc["dataset"]) == (3, 2, "tiny")
    good, no_audio, absent = doc["predictions"]
    ckpts = [str(paths.checkpoints("late_fusion") / f"seed{s}.ckpt") for s in (0, 1)]
    for entry, video in zip(doc["predictions"], videos, strict=True):
        assert entry["path"] == video and entry["model"] == "late_fusion"
        assert entry["checkpoints"] == ckpts and entry["variant"] == "unaligned"
        assert entry["dataset"] == "tiny" and entry["task"] == "regression"
    assert set(good) >= {"score", "seed_scores", "polarity", "label_range", "notes"}
    assert len(good["seed_scores"]) == 2 and np.isfinite(good["score"])
    assert good["score"] == pytest.approx(np.mean(good["seed_scores"]))
    assert good["polarity"] == polarity(good["score"], (-3, 3)).lower()
    assert good["label_range"] == [-3.0, 3.0]
    assert good["transcript"] is None and NO_TRANSCRIPT in good["notes"]
    assert "no modality to score" in no_audio["error"] and "score" not in no_audio
    assert "no audio stream" in no_audio["error"] and "no face" in no_audio["error"]
    assert good["absent"] == ["text"]
    assert "video file not found" in absent["error"]
    table = capsys.readouterr().out
    assert "mute.mp4" in table and "error:" in table and "1 of 3 video(s) scored" in table


def test_video_without_audio_is_scored_with_audio_absent(
    setting, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A video without an audio stream gets the robustness stage's absent:audio input: the
    same clip's cached rows with audio removed, and the same score."""
    params, paths, manifest, _ = setting
    # c0 again, without its audio track (same frames, so the same face features)
    mute = make_mp4(tmp_path / "c0.mp4", seconds=0.8, fps=8, face=True, audio=None)
    seen: list[dict] = []
    real = predict_mod.forward

    def spy(net, dataset, device="cpu"):
        seen.extend(dataset[i] for i in range(len(dataset)))
        return real(net, dataset, device)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(predict_mod, "forward", spy)
        doc = predict_videos(params, paths, "late_fusion", [mute], text=TEXTS[0],
                             out=tmp_path / "p.json")
    (entry,) = doc["predictions"]
    assert entry["absent"] == ["audio"] and np.isfinite(entry["score"])
    assert any(n.startswith("audio absent:") and "no audio stream" in n for n in entry["notes"])
    assert "[absent: audio]" in capsys.readouterr().out

    h5 = paths.h5("unaligned")
    split, row = _cache_rows(h5)[manifest["clip_id"][0]]
    no_audio = Condition("absent", ("audio",))

    def without_audio(batch: dict) -> dict:
        return corrupt(batch, no_audio, torch.Generator(), 100, {})

    expected = without_audio(collate([H5Dataset(h5, split)[row]]))
    for key in ("text_ids", "text_mask", "words", "words_mask", "audio", "audio_mask",
                "vision", "vision_mask"):
        assert torch.equal(seen[0][key], expected[key][0]), key
    scores = []
    for seed in (0, 1):
        net, _ = load_checkpoint(paths.checkpoints("late_fusion") / f"seed{seed}.ckpt")
        ids, _, out = evaluate_predict(net, H5Dataset(h5, split), transform=without_audio)
        scores.append(float(out[ids.index(manifest["clip_id"][0])]))
    np.testing.assert_allclose(entry["seed_scores"], scores, rtol=1e-5, atol=1e-6)

    strict = params.model_copy(update={"predict": PredictParams(allow_absent=False)})
    doc = predict_videos(strict, paths, "late_fusion", [mute], text=TEXTS[0],
                         out=tmp_path / "p.json")
    (entry,) = doc["predictions"]
    assert "score" not in entry and "no audio stream" in entry["error"]
    assert "predict.allow_absent is false" in entry["error"]


def test_aligned_without_transcript_says_what_the_model_saw(setting, tmp_path: Path) -> None:
    params, paths, manifest, _ = setting
    doc = predict_videos(params, paths, "fasca_net", [manifest["media"][2]],
                         checkpoint=paths.checkpoints("fasca_net") / "seed1.ckpt",
                         out=tmp_path / "p.json", asr="none")
    entry = doc["predictions"][0]
    assert entry["seeds"] == [1] and np.isfinite(entry["score"])
    assert entry["notes"][:2] == [DEMO_WARNING, NO_TRANSCRIPT]  # a demo-trained checkpoint
    assert predict_mod.ALIGNED_NO_WORDS in entry["notes"]
    assert entry["absent"] == ["text", "audio", "vision"]


def test_without_a_transcript_speech_recognition_gives_the_text(setting, tmp_path: Path) -> None:
    from tasks.demo.corpus import write_mp4
    from tasks.demo.speech import VOICES, make_audio

    params, paths, _, _ = setting
    samples, _ = make_audio("I really loved this film, the acting was wonderful.", 1.0,
                            VOICES[0])
    n_frames = int(len(samples) / 16000 * 12)
    video = tmp_path / "spoken.mp4"
    write_mp4(video, np.full((n_frames, 64, 64, 3), 128, np.uint8),
              samples[: round(n_frames / 12 * 16000)], 12)
    for model in MODELS:  # an aligned model gets words to align audio and vision to
        doc = predict_videos(params, paths, model, [video], out=tmp_path / "p.json")
        (entry,) = doc["predictions"]
        assert entry["transcript_source"] == "asr:pocketsphinx"
        assert {"film", "acting"} & set(entry["transcript"].split())
        # the note says what happened; the terminal names the engine
        assert any(n.startswith("text: no transcript given: speech recognition "
                                "(asr:pocketsphinx) heard ") for n in entry["notes"])
        assert "asr:pocketsphinx" in predict_mod.format_table(doc["predictions"])
        assert np.isfinite(entry["score"])
        assert predict_mod.ALIGNED_NO_WORDS not in entry.get("notes", [])
    with pytest.raises(PredictError, match="--asr whisper: .*asr_model"):
        predict_videos(params, paths, "late_fusion", [video], out=tmp_path / "p.json",
                       asr="whisper")


def test_params_that_differ_from_training_are_named(setting, tmp_path: Path) -> None:
    params, paths, manifest, _ = setting
    video = [manifest["media"][0]]
    for key, value in [("extract.audio.hop_seconds", 0.05),
                       ("extract.vision.fps", 6), ("extract.text.max_tokens", 16)]:
        other = load_params(ROOT / "params.yaml", overrides={**TINY, key: value})
        with pytest.raises(PredictError, match=rf"trained with {key} = .* current params"):
            predict_videos(other, paths, "late_fusion", video, out=tmp_path / "p.json")
    # Run-control keys do not change features.
    same = load_params(ROOT / "params.yaml", overrides={**TINY, "extract.workers": 1})
    predict_videos(same, paths, "late_fusion", video, out=tmp_path / "p.json")
    # A model trained on official .csd features cannot score raw video.
    ckpt = torch.load(paths.checkpoints("late_fusion") / "seed0.ckpt", weights_only=True)
    ckpt["params"]["dataset"]["source"] = "csd"
    torch.save(ckpt, tmp_path / "seed0.ckpt")
    with pytest.raises(PredictError, match="dataset.source 'csd'"):
        predict_videos(params, paths, "late_fusion", video, checkpoint=tmp_path,
                       out=tmp_path / "p.json")


def test_missing_checkpoint_cache_and_stats(setting, tmp_path: Path) -> None:
    params, paths, manifest, _ = setting
    video = [manifest["media"][0]]
    with pytest.raises(PredictError, match=r"msaflow train unimodal_audio"):
        predict_videos(params, paths, "unimodal_audio", video, out=tmp_path / "p.json")
    with pytest.raises(PredictError, match="is a checkpoint of model 'late_fusion'"):
        predict_videos(params, paths, "fasca_net", video, out=tmp_path / "p.json",
                       checkpoint=paths.checkpoints("late_fusion") / "seed0.ckpt")

    other = Paths.from_params(params, base=tmp_path)
    shutil.copytree(paths.checkpoints("late_fusion"), other.checkpoints("late_fusion"))
    with pytest.raises(PredictError, match="cache not found.*msaflow cache"):
        predict_videos(params, other, "late_fusion", video, out=tmp_path / "p.json")
    other.processed.mkdir(parents=True)
    shutil.copy(paths.h5("unaligned"), other.h5("unaligned"))
    with h5py.File(other.h5("unaligned"), "a") as f:
        del f["norm/audio"]
    with pytest.raises(PredictError, match=r"'norm/audio/mean' \(train statistics\) is missing"):
        predict_videos(params, other, "late_fusion", video, out=tmp_path / "p.json")
    with h5py.File(other.h5("unaligned"), "a") as f:
        f.attrs["input_hash"] = "rebuilt"
    with pytest.raises(PredictError, match="cache was rebuilt since"):
        predict_videos(params, other, "late_fusion", video, out=tmp_path / "p.json")


def test_transcripts_csv_by_clip_id_and_conflicts(tmp_path: Path) -> None:
    video = tmp_path / "clip7.mp4"
    csv = tmp_path / "t.csv"
    pd.DataFrame({"clip_id": ["clip7", "other"], "text": ["so good", "meh"]}).to_csv(
        csv, index=False)
    assert predict_mod.transcript_for(video, predict_mod.read_transcripts(csv)) == (
        "so good", [])
    pd.DataFrame({"path": ["clip7.mp4", str(video)], "text": ["a", "b"]}).to_csv(csv, index=False)
    with pytest.raises(PredictError, match=r"lines \[2, 3\] give different transcripts"):
        predict_mod.transcript_for(video, predict_mod.read_transcripts(csv))
    csv.write_bytes(b"clip_id,text\nclip7,caf\xe9 was good\n")  # latin-1, not UTF-8
    text, notes = predict_mod.transcript_for(video, predict_mod.read_transcripts(csv))
    assert text == "caf\ufffd was good"
    assert notes == [f"{csv} line 2: not valid utf-8 (byte 0xe9 at column 10), decoded with "
                     "U+FFFD replacement"]
    pd.DataFrame({"file": ["x"], "text": ["a"]}).to_csv(csv, index=False)
    with pytest.raises(PredictError, match="expected columns text and path"):
        predict_mod.read_transcripts(csv)


def test_polarity_and_classification_scores() -> None:
    assert [polarity(x, (-3, 3)) for x in (-0.2, 0.0, 0.01)] == [
        "Negative", "Neutral", "Positive"]
    assert [polarity(x, (-1, 1)) for x in (-0.1, 0.1, 0.11)] == [
        "Negative", "Neutral", "Positive"]
    ens = SimpleNamespace(
        spec=SimpleNamespace(task="classification"), class_names=["neg", "neu", "pos"]
    )
    entry: dict = {}
    logits = [np.array([0.0, 0.0, 2.0]), np.array([3.0, 0.0, 0.0])]
    predict_mod._score(entry, logits, ens)
    probs = np.mean([np.exp(x) / np.exp(x).sum() for x in logits], axis=0)
    assert entry["class"] == "neg" and entry["seed_classes"] == ["pos", "neg"]
    assert list(entry["probabilities"].values()) == pytest.approx(probs.tolist())


def test_cli_exit_code_and_overrides(
    setting, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import flows.predict as flow_mod
    from msaflow.cli import main

    params, paths, manifest, _ = setting
    # Run the flow and task bodies directly: no Prefect server in a unit test.
    monkeypatch.setattr(flow_mod, "predict_task", flow_mod.predict_task.fn)
    monkeypatch.setattr(flow_mod, "predict_flow", flow_mod.predict_flow.fn)
    monkeypatch.chdir(paths.base)
    raw = params.model_dump(mode="json")
    raw["dataset"]["name"] = "elsewhere"  # put right by -S below
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    args = ["--params", str(tmp_path / "params.yaml"), "predict", "--model", "late_fusion",
            "-S", "dataset.name=tiny", "--out", str(tmp_path / "p.json")]
    assert main([*args, manifest["media"][0], "missing.mp4"]) == 0
    assert json.loads((tmp_path / "p.json").read_text())["failed"] == 1
    assert main([*args, "missing.mp4"]) == 1
    # Without the override the params name a dataset with no trained model.
    assert main([*args[:-4], "--out", str(tmp_path / "p.json"), "missing.mp4"]) == 1
    assert "msaflow train late_fusion" in capsys.readouterr().err
