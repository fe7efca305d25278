"""FASCA-Net: fine-grained alignment via self- and cross-attention (github.com/MG205/FASCA-Net).

``config`` (torch-free: the ``models.fasca_net`` keys and presets) and ``model`` (the
``nn.Module`` and its blocks). Registered here without importing torch.
"""

from models.fasca_net.config import PRESETS, FascaNetConfig
from models.registry import ModelEntry, register

register(ModelEntry("fasca_net", FascaNetConfig, "models.fasca_net.model:FascaNet",
                    presets=PRESETS))
