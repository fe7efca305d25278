"""DashFusion's config: the architecture and contrastive-learning keys of ``models.dashfusion``,
and its presets per dataset preset. No torch here: params validate against it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from config.errors import ParamsError

PAIR_SOURCES = ("reencode", "bank")
LABEL_GROUPS = ("rounded", "exact")


@dataclass
class DashFusionConfig:
    """Architecture and contrastive-learning knobs (``models.dashfusion`` in params.yaml)."""

    d_model: int = 128  # width of every stream after its encoder (paper: 128)
    heads: int = 8  # heads of the audio/vision encoders and of HBF
    ff_dim: int = 256  # feed-forward width of the audio/vision encoders and HBF (2 × d_model)
    encoder_layers: int = 2  # audio/vision Transformer layers: 2 for MOSI/SIMS, 4 for MOSEI
    hbf_depth: int = 2  # HBF levels: 2 for MOSI/SIMS, 3 for MOSEI
    bottleneck: int = 8  # bottleneck tokens at the first HBF level, halved at every next one
    align_heads: int = 8  # temporal alignment heads …
    align_dim_head: int = 32  # … of 32 dims each (the reference's 8 × 32)
    dropout: float = 0.0  # fusion dropout (alignment, HBF); the reference uses 0.0
    encoder_dropout: float = 0.1  # audio/vision embedding dropout (authors' a/v_drop_out)
    encoder_layer_dropout: float = 0.5  # their Transformer layers (AudioEncoder's default 0.5)
    hbf_out_proj: bool = False  # an output projection in HBF attention (the authors' has none)
    label_groups: str = "rounded"  # retrieval groups: rounded labels (MOSI/MOSEI) | exact (SIMS)
    temperature: float = 0.5  # NT-Xent temperature (reference "heat")
    contrastive_weight: float = 0.2  # loss = task + weight × contrastive
    n_pos: int = 2  # positives drawn per anchor (similar features, same rounded label)
    n_hard_neg: int = 2  # hard negatives (similar features, different label)
    n_easy_neg: int = 2  # easy negatives (dissimilar features, different label)
    candidates: int = 10  # nearest candidates kept per category; draws are among them
    table_refresh_epochs: int = 2  # rebuild the table from the model's embeddings this often
    pair_source: str = "reencode"  # reencode: retrieved clips go through the model (authors);
    #                                bank: their embeddings come from a per-step feature bank
    finetune_text: bool = True  # fine-tune the text encoder (paper) or keep it frozen
    head_lr: float | None = None  # lr of everything but the text encoder (None: trainer's lr)
    table_chunk: int = 1024  # anchor rows per matmul while building the table (memory bound)
    # recompute the audio/vision encoder layers and the text encoder's in the backward pass
    # instead of keeping their activations: memory for time (docs/scaling.md)
    activation_checkpointing: bool = False

    def __post_init__(self) -> None:
        checks = {
            "d_model": self.d_model > 0 and self.d_model % self.heads == 0,
            "hbf_depth": self.hbf_depth >= 1,
            "bottleneck": self.bottleneck >= 1,
            "encoder_layers": self.encoder_layers >= 0,
            "temperature": self.temperature > 0,
            "contrastive_weight": self.contrastive_weight >= 0,
            "n_pos": 1 <= self.n_pos <= self.candidates,
            "n_hard_neg": 0 <= self.n_hard_neg <= self.candidates,
            "n_easy_neg": 0 <= self.n_easy_neg <= self.candidates,
            "table_refresh_epochs": self.table_refresh_epochs >= 1,
            "pair_source": self.pair_source in PAIR_SOURCES,
            "head_lr": self.head_lr is None or float(self.head_lr) > 0,
            "table_chunk": self.table_chunk >= 1,
            "label_groups": self.label_groups in LABEL_GROUPS,
            "encoder_layer_dropout": 0 <= self.encoder_layer_dropout < 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ParamsError(
                f"models.dashfusion: invalid value for {bad} in {self!r} "
                f"(d_model must divide by heads; n_* ≤ candidates; pair_source in "
                f"{PAIR_SOURCES}; label_groups in {LABEL_GROUPS})"
            )


# --------------------------------------------------------------------------- presets

# Trainer keys (lr, batch_size, …) and architecture keys per dataset preset
# (config/presets.py), from the authors' config.py (epochs from its comments: 100 for
# MOSI/SIMS, 125 for MOSEI; they train that many epochs, so patience = max_epochs: no early
# stop, the checkpoint is still the best valid epoch). SIMS groups retrieval pairs by its
# unrounded labels, as the authors' SIMS loader does. `models.dashfusion.preset: auto` picks
# the dataset's entry; the trainer puts it over train.* and under the keys written in
# models.dashfusion. Table with sources: docs/models.md "Against the authors' code".
PRESETS: dict[str, dict[str, Any]] = {
    "mosi": {
        "lr": 5e-5, "batch_size": 16, "warmup_epochs": 10, "max_epochs": 100,
        "patience": 100, "encoder_layers": 2, "hbf_depth": 2,
    },
    "sims": {
        "lr": 5e-5, "batch_size": 16, "warmup_epochs": 10, "max_epochs": 100,
        "patience": 100, "encoder_layers": 2, "hbf_depth": 2, "label_groups": "exact",
    },
    "mosei": {
        "lr": 2e-5, "batch_size": 8, "warmup_epochs": 1, "max_epochs": 125,
        "patience": 125, "encoder_layers": 4, "hbf_depth": 3,
    },
    # ~120 training clips on 2 CPU cores, 2 seeds in a few minutes: one encoder layer, few
    # epochs, a short warm-up, the text encoder at a BERT fine-tuning lr and the randomly
    # initialised rest 10× faster (it would barely move in 15 epochs at 5e-5); retrieved
    # clips come from the feature bank, because re-encoding 6 clips per anchor through
    # MiniLM is ~7× the cost of a step. Light dropout everywhere and the HBF output
    # projection as the demo's results were made with (120 clips, 15 epochs; the authors'
    # 0.5 layer dropout is for thousands of clips and 100 epochs).
    "demo": {
        "lr": 5e-5, "head_lr": 5e-4, "batch_size": 16, "warmup_epochs": 1, "max_epochs": 15,
        "encoder_layers": 1, "hbf_depth": 2, "pair_source": "bank",
        "encoder_layer_dropout": 0.1, "hbf_out_proj": True,
    },
}


def preset(dataset_name: str) -> dict[str, Any]:
    """The authors' settings for a dataset (trainer and architecture keys together)."""
    key = dataset_name.lower()
    if key not in PRESETS:
        raise ParamsError(
            f"models.dashfusion.preset: no preset for dataset {dataset_name!r}; "
            f"available: {sorted(PRESETS)}"
        )
    return dict(PRESETS[key])
