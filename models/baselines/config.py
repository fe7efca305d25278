"""The baselines' configs (``models.unimodal_*``, ``models.late_fusion``); no torch here."""

from __future__ import annotations

from dataclasses import dataclass

STREAMS = ("words", "audio", "vision")
ENCODERS = ("transformer", "gru")


@dataclass(frozen=True)
class UnimodalConfig:
    """Hyper-parameters of one modality's encoder + head."""

    hidden: int = 64  # encoder width (Transformer d_model; GRU hidden per direction x 2)
    layers: int = 1  # Transformer blocks or stacked GRU layers
    heads: int = 4  # attention heads (transformer only); must divide hidden
    encoder: str = "transformer"  # "transformer" | "gru" (bidirectional)
    dropout: float = 0.1  # inside the encoder and before the head's output layer
    head_hidden: int = 64  # width of the MLP head

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder: expected one of {ENCODERS}, got {self.encoder!r}")
        for key in ("hidden", "layers", "heads", "head_hidden"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: expected a positive int, got {getattr(self, key)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: expected a value in [0, 1), got {self.dropout}")
        if self.encoder == "transformer" and self.hidden % self.heads:
            raise ValueError(f"heads: {self.heads} does not divide hidden={self.hidden}")
        if self.encoder == "gru" and self.hidden % 2:
            raise ValueError(f"hidden: the BiGRU needs an even width, got {self.hidden}")


@dataclass(frozen=True)
class LateFusionConfig(UnimodalConfig):
    """Per-modality encoders as UnimodalConfig, plus how the parts are trained."""

    aux_weight: float = 0.5  # weight of each modality head's own loss (0: fused loss only)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.aux_weight < 0:
            raise ValueError(f"aux_weight: expected >= 0, got {self.aux_weight}")
