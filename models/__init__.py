"""torch models: baselines, DashFusion, FASCA-Net, shared layers and a registry."""
