"""Per-dataset presets: what ``auto`` means in params.yaml for each known dataset.

DVC writes ``-S`` overrides into params.yaml, so the params loader cannot tell a value the
user typed from a default; the dataset-dependent keys therefore hold ``auto`` in params.yaml
and `tasks.params.parse_params` replaces each ``auto`` by the value of the dataset preset
(``dataset.preset``; ``auto`` = the preset named like ``dataset.name``, else ``generic``)
before validation. Any value other than ``auto`` wins. A key a preset leaves out keeps the
schema default of tasks/params.py (e.g. the CMU file names outside MOSI and MOSEI).

Each preset also names the model presets that ``models.<name>.preset: auto`` picks
(``DashFusion.presets``, ``FascaNet.presets``; tasks/train.py merges them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

AUTO = "auto"
GENERIC = "generic"

# The keys a dataset preset may fill (dotted, as in params.yaml / `dvc exp run -S`).
CSD_KEYS = ("words", "word_vectors", "audio", "vision", "labels", "folds")
COVERED = (
    "dataset.task",
    "dataset.label_range",
    "dataset.layout",
    *(f"dataset.csd.{k}" for k in CSD_KEYS),
    "extract.text.timing",
    "extract.text.language",
    "cache.seq_len.words",
    "cache.seq_len.audio",
    "cache.seq_len.vision",
)

# MMSA's seq_lens are [text, audio, vision] of its unaligned features, from
# github.com/thuiar/MMSA src/MMSA/config/config_regression.json ("datasetCommonParams",
# commit a94e65d); its aligned variants use 50 for every stream, as our aligned variant uses
# seq_len.words. MELD/IEMOCAP are not in MMSA: their windows come from the same lab's
# MELD-DA / IEMOCAP-DA max_seq_lengths (github.com/thuiar/MIntOOD data/__init__.py: 70 / 44
# BERT tokens, 530 / 380 wav2vec2 frames of 20 ms = 10.6 s / 7.6 s), in frames of our raw
# extractors' default rates (extract.audio.hop_seconds 0.04 = 25 Hz, extract.vision.fps 6).


@dataclass(frozen=True)
class DatasetPreset:
    """Values of the dataset-dependent keys, and the model presets ``auto`` applies."""

    about: str  # one line for docs and logs
    values: dict[str, Any]  # dotted key (one of COVERED) → value
    model_preset: str | None  # key of DashFusion.presets / FascaNet.presets, or None


# File names of the CMU Multimodal SDK's CMU-MOSI / CMU-MOSEI computational sequences as
# MMSA-era downloads name them (newer SDK listings rename some, e.g. MOSEI's
# CMU_MOSEI_TimestampedGloveVectors.csd / CMU_MOSEI_LabelsSentiment.csd: set those keys).
_MOSI_CSD = {
    "dataset.csd.words": "CMU_MOSI_TimestampedWords.csd",
    "dataset.csd.word_vectors": "CMU_MOSI_TimestampedWordVectors.csd",  # glove 300
    "dataset.csd.audio": "CMU_MOSI_COVAREP.csd",  # 74-d COVAREP
    "dataset.csd.vision": "CMU_MOSI_Visual_Facet_42.csd",  # 35-d FACET 4.2
    "dataset.csd.labels": "CMU_MOSI_Opinion_Labels.csd",  # one sentiment per segment
    "dataset.csd.folds": "mosi",  # mmsdk cmu_mosi_std_folds (tasks/sources/csd/manifest.py)
}
_MOSEI_CSD = {
    "dataset.csd.words": "CMU_MOSEI_TimestampedWords.csd",
    "dataset.csd.word_vectors": "CMU_MOSEI_TimestampedWordVectors.csd",  # glove 300
    "dataset.csd.audio": "CMU_MOSEI_COVAREP.csd",  # 74-d COVAREP
    "dataset.csd.vision": "CMU_MOSEI_VisualFacet42.csd",  # 35-d FACET 4.2
    "dataset.csd.labels": "CMU_MOSEI_Labels.csd",  # column 0: sentiment (contracts.md)
    "dataset.csd.folds": "mosei",  # mmsdk cmu_mosei_std_folds (tasks/sources/csd/manifest.py)
}

PRESETS: dict[str, DatasetPreset] = {
    "demo": DatasetPreset(
        about="the generated demo corpus (data/raw/demo, MMSA layout)",
        values={
            "dataset.task": "regression",  # a hidden sentiment score, as MOSI
            # tasks/demo/views.py draws labels on MOSI's scale
            "dataset.label_range": [-3.0, 3.0],
            # tasks/demo/corpus.py writes Raw/<video>/<clip>.mp4 + label.csv
            "dataset.layout": "mmsa",
            # ~4 s clips: the lengths the demo's results were obtained with (24 words,
            # 4 s of 25 Hz audio, 4 s of 6 fps video); kept so its numbers do not change.
            "cache.seq_len.words": 24,
            "cache.seq_len.audio": 100,
            "cache.seq_len.vision": 24,
        },
        model_preset="demo",
    ),
    "mosi": DatasetPreset(
        about="CMU-MOSI: MMSA raw clips or the CMU SDK's .csd files",
        values={
            "dataset.task": "regression",
            "dataset.label_range": [-3.0, 3.0],  # sentiment in [-3, 3] (Zadeh et al., 2016)
            "dataset.layout": "mmsa",  # MMSA's raw release: Raw/<video>/<clip>.mp4 + label.csv
            **_MOSI_CSD,
            "cache.seq_len.words": 50,  # MMSA config_regression.json mosi: [50, 500, 375]
            "cache.seq_len.audio": 500,
            "cache.seq_len.vision": 375,
        },
        model_preset="mosi",
    ),
    "mosei": DatasetPreset(
        about="CMU-MOSEI: MMSA raw clips or the CMU SDK's .csd files",
        values={
            "dataset.task": "regression",
            "dataset.label_range": [-3.0, 3.0],  # sentiment in [-3, 3] (Zadeh et al., 2018)
            "dataset.layout": "mmsa",  # MMSA's raw release: Raw/<video>/<clip>.mp4 + label.csv
            **_MOSEI_CSD,
            "cache.seq_len.words": 50,  # MMSA config_regression.json mosei: [50, 500, 375]
            "cache.seq_len.audio": 500,
            "cache.seq_len.vision": 375,
        },
        model_preset="mosei",
    ),
    "sims": DatasetPreset(
        about="CH-SIMS: MMSA raw clips",
        values={
            "dataset.task": "regression",
            "dataset.label_range": [-1.0, 1.0],  # sentiment in [-1, 1] (Yu et al., 2020)
            "dataset.layout": "mmsa",  # MMSA's raw release: Raw/<video>/<clip>.mp4 + label.csv
            # Mandarin: the shipped aligner is English only, so words are spread; Whisper
            # (extract.text.asr: whisper) recognises Mandarin with word times.
            "extract.text.timing": "spread",
            "extract.text.language": "zh",
            "cache.seq_len.words": 39,  # MMSA config_regression.json sims: [39, 400, 55]
            "cache.seq_len.audio": 400,
            "cache.seq_len.vision": 55,
        },
        model_preset="sims",
    ),
    "meld": DatasetPreset(
        about="MELD: the MELD project's raw release, 7 emotions",
        values={
            "dataset.task": "classification",  # 7 emotions (dataset.target: sentiment for 3)
            # label = sentiment -1 / 0 / 1 (tasks/sources/layouts/meld.py)
            "dataset.label_range": [-1.0, 1.0],
            "dataset.layout": "meld",
            "cache.seq_len.words": 70,  # MIntOOD MELD-DA: 70 tokens ≥ words
            "cache.seq_len.audio": 265,  # 10.6 s at 25 Hz
            "cache.seq_len.vision": 64,  # 10.6 s at 6 fps
        },
        model_preset="meld",
    ),
    "iemocap": DatasetPreset(
        about="IEMOCAP: the USC SAIL release, 4 classes (happy+excited merged)",
        values={
            "dataset.task": "classification",  # 4class (dataset.target: 6class for 6)
            "dataset.label_range": [-3.0, 3.0],  # unused: IEMOCAP clips carry classes only
            "dataset.layout": "iemocap",
            "cache.seq_len.words": 44,  # MIntOOD IEMOCAP-DA: 44 tokens ≥ words
            "cache.seq_len.audio": 190,  # 7.6 s at 25 Hz
            "cache.seq_len.vision": 46,  # 7.6 s at 6 fps
        },
        model_preset="iemocap",
    ),
    GENERIC: DatasetPreset(
        about="any other dataset, e.g. your own videos (folder layout)",
        values={
            "dataset.task": "regression",  # the schema default: a sentiment score
            "dataset.label_range": [-3.0, 3.0],  # the schema default: the CMU scale
            "dataset.layout": "folder",  # clips.csv + media (docs/contracts.md)
            # A 10 s window (the order of MELD's) at the default extractor rates, and
            # MMSA's 50-word text window of MOSI/MOSEI.
            "cache.seq_len.words": 50,
            "cache.seq_len.audio": 250,
            "cache.seq_len.vision": 60,
        },
        model_preset=None,  # models keep their own defaults
    ),
}


def known() -> list[str]:
    """Every name ``dataset.preset`` accepts besides ``auto``."""
    return sorted(PRESETS)


def preset_name(dataset_name: Any, choice: Any = AUTO) -> str:
    """The preset a dataset uses: ``choice``, or for ``auto`` the one its name names."""
    if choice is None or choice == AUTO:
        key = dataset_name.lower() if isinstance(dataset_name, str) else None
        return key if key in PRESETS else GENERIC
    if not isinstance(choice, str) or choice not in PRESETS:
        raise KeyError(choice)
    return choice


def model_preset(dataset_preset: str) -> str | None:
    """The model-preset name that ``models.<name>.preset: auto`` looks up."""
    return PRESETS[dataset_preset].model_preset


__all__ = [
    "AUTO",
    "COVERED",
    "GENERIC",
    "PRESETS",
    "DatasetPreset",
    "known",
    "model_preset",
    "preset_name",
]
