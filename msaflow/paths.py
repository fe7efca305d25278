"""Every artifact path of the pipeline, declared once.

`dvc.yaml` spells the same layout with ``${dataset.name}``; tests check the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from msaflow.schema import Params


@dataclass(frozen=True)
class Paths:
    """Where each stage reads and writes, for one dataset, relative to the repo root."""

    dataset: str
    raw_root: Path
    base: Path = Path(".")

    @classmethod
    def from_params(cls, params: Params, base: Path | str = ".") -> Paths:
        return cls(
            dataset=params.dataset.name, raw_root=Path(params.dataset.root), base=Path(base)
        )

    @property
    def demo_root(self) -> Path:
        """The demo stage always writes here; ``dataset.root`` points here for the demo."""
        return self.base / "data" / "raw" / "demo"

    @property
    def interim(self) -> Path:
        return self.base / "data" / "interim" / self.dataset

    @property
    def manifest(self) -> Path:
        return self.interim / "manifest.csv"

    @property
    def ingest_errors(self) -> Path:
        return self.interim / "ingest_errors.csv"

    @property
    def csd_dir(self) -> Path:
        return self.interim / "csd"

    @property
    def extract_cache(self) -> Path:
        return self.interim / "extract_cache"

    @property
    def extract_errors(self) -> Path:
        return self.interim / "extract_errors.csv"

    @property
    def processed(self) -> Path:
        return self.base / "data" / "processed" / self.dataset

    def h5(self, variant: str) -> Path:
        return self.processed / f"{variant}.h5"

    @property
    def exports(self) -> Path:
        """``msaflow export``'s files (not a DVC stage's: made on request, git-ignored)."""
        return self.base / "data" / "exports" / self.dataset

    def checkpoints(self, model: str) -> Path:
        return self.base / "data" / "checkpoints" / self.dataset / model

    def robustness(self, model: str) -> Path:
        """The robustness stage's per-model report (CSV curves beside it)."""
        return self.report(model) / "robustness.json"

    @property
    def robustness_figure(self) -> Path:
        """Every model's robustness curves (the report stage draws it)."""
        return self.base / "reports" / f"robustness_{self.dataset}.png"

    @property
    def reports(self) -> Path:
        return self.base / "reports" / self.dataset

    def report(self, model: str) -> Path:
        return self.reports / model

    @property
    def summary(self) -> Path:
        """Cross-model table; beside, not inside, reports/<dataset>/ (which it depends on)."""
        return self.base / "reports" / f"summary_{self.dataset}.md"
