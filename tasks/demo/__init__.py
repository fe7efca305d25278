"""The built-in demo corpus (stage ``demo``): generated opinion clips with known sentiment.

``corpus`` plans and renders the corpus (the stage's entry point is ``corpus.generate``);
``sentences``, ``speech`` and ``face`` render a clip's text, audio and video from the noisy
views of its hidden sentiment (``views``).
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

# What predict and the report say of a model trained on the demo corpus.
DEMO_WARNING = "trained on the synthetic demo corpus: scores on real video mean nothing"


def is_demo(dataset: Any) -> bool:
    """Whether a ``dataset`` params section (a mapping, or the validated section) is the
    demo corpus: its preset, or its root the demo stage's folder."""
    get = dataset.get if isinstance(dataset, dict) else lambda k: getattr(dataset, k, None)
    root = PurePath(str(get("root") or ""))
    return get("preset") == "demo" or root.parts[-3:] == ("data", "raw", "demo")
