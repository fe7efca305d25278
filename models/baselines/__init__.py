"""The baselines every report is read against: one model per modality, and a late fusion.

``config`` (torch-free: the ``models.<name>`` keys) and ``model`` (the ``nn.Module``s).
Registered here without importing torch.
"""

from models.baselines.config import LateFusionConfig, UnimodalConfig
from models.registry import ModelEntry, register

for _name, _cls in (("unimodal_text", "UnimodalText"), ("unimodal_audio", "UnimodalAudio"),
                    ("unimodal_vision", "UnimodalVision")):
    register(ModelEntry(_name, UnimodalConfig, f"models.baselines.model:{_cls}"))
register(ModelEntry("late_fusion", LateFusionConfig, "models.baselines.model:LateFusion"))
