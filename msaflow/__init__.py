"""msaflow: a reproducible multimodal sentiment analysis pipeline (DVC ledger, Prefect runs)."""

__version__ = "0.1.0"
