"""Every artifact path of the pipeline, declared once.

`dvc.yaml` spells the same layout with ``${dataset.name}``; tests check the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from config.schema import Params


def checkpoint_name(seed: int) -> str:
    """A seed's checkpoint file name: ``seed<k>.ckpt``."""
    return f"seed{seed}.ckpt"


def checkpoint_seed(path: Path) -> int | None:
    """The seed a ``seed<k>.ckpt`` file name holds, or None for another name."""
    digits = path.name.removeprefix("seed").removesuffix(".ckpt")
    return int(digits) if path.suffix == ".ckpt" and path.name.startswith("seed") \
        and digits.isdigit() else None


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

    def export(self, fmt: str) -> Path:
        """The folder of one export format (``data/exports/<dataset>/<format>``)."""
        return self.exports / fmt

    def checkpoints(self, model: str) -> Path:
        return self.base / "data" / "checkpoints" / self.dataset / model

    def checkpoint(self, model: str, seed: int) -> Path:
        """One seed's trained model: the train stage's output, what evaluate reads."""
        return self.checkpoints(model) / checkpoint_name(seed)

    def train_work(self, model: str, seed: int) -> Path:
        """A seed's folder while it trains: Lightning's ``last.ckpt`` (a killed run resumes
        from it) and the curves so far. Not an output: the checkpoint and the curves appear
        in their places only when the seed is done."""
        return self.interim / "train_work" / model / f"seed{seed}"

    def train_curves(self, model: str, seed: int) -> Path:
        """DVCLive's curves of one seed's training."""
        return self.report(model) / "train" / f"seed{seed}"

    @property
    def champions(self) -> Path:
        """``msaflow retrain``'s champions of this dataset (not a DVC output)."""
        return self.base / "data" / "champions" / self.dataset

    def champion(self, model: str) -> Path:
        """One model's champion folder (``champion.json``, its checkpoints, ``previous/``)."""
        return self.champions / model

    def predictions(self, model: str) -> Path:
        """``msaflow predict``'s JSON without ``--out`` (git ignores the folder)."""
        return self.base / "predictions" / self.dataset / f"{model}.json"

    @property
    def code(self) -> Path:
        """The `code` stage's hashes of each stage's modules (``<stage>.json``)."""
        return self.base / "data" / "code"

    @property
    def headlines(self) -> Path:
        """The report's headline metrics, one file per model: what DVC shows as metrics."""
        return self.base / "reports" / f"headline_{self.dataset}"

    def headline(self, model: str) -> Path:
        """One model's headline metrics (``dvc exp show``, ``dvc metrics diff``)."""
        return self.headlines / f"{model}.json"

    def clip_conditions(self, model: str) -> Path:
        """Per clip, the model's prediction clean and with each modality absent."""
        return self.report(model) / "clip_conditions.csv"

    def robustness(self, model: str) -> Path:
        """The robustness stage's per-model report: every condition, split and seed."""
        return self.report(model) / "robustness.json"

    @property
    def plots(self) -> Path:
        """What dvc.yaml's top-level ``plots:`` draw (``dvc plots show``/``diff``); beside
        reports/<dataset>/, which the report stage reads."""
        return self.base / "reports" / f"plots_{self.dataset}"

    def pred_vs_true(self, model: str) -> Path:
        """The report's picture of a model's test predictions against the labels (a confusion
        matrix for classification)."""
        return self.plots / "pred_vs_true" / f"{model}.png"

    @property
    def valid_curves(self) -> Path:
        """The report stage's validation curves, one CSV per model (its seeds as series)."""
        return self.plots / "valid"

    def robustness_curve(self, kind: str) -> Path:
        """The report stage's robustness curve of every model: ``missing`` or ``noise``."""
        return self.plots / f"robustness_{kind}.csv"

    @property
    def html_report(self) -> Path:
        """The report stage's self-contained HTML results report."""
        return self.base / "reports" / f"report_{self.dataset}.html"

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
