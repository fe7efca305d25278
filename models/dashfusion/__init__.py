"""DashFusion (Wen et al., TNNLS 2025): dual-stream alignment + hierarchical bottleneck fusion.

``config`` (torch-free: the ``models.dashfusion`` keys and presets), ``blocks`` (alignment,
HBF), ``retrieval`` (the retrieval table, pair sampling, the contrastive loss) and ``model``
(the ``nn.Module``). Registered here without importing torch.
"""

from models.dashfusion.config import PRESETS, DashFusionConfig
from models.registry import ModelEntry, register

register(ModelEntry("dashfusion", DashFusionConfig, "models.dashfusion.model:DashFusion",
                    presets=PRESETS))
