"""torch models: baselines, DashFusion, FASCA-Net, shared layers, and a registry whose
entries (each model's config and presets) import no torch."""
