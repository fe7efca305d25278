"""Prefect flows: one per stage, plus the whole pipeline. Thin: wiring only."""
