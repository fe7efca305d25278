"""Prefect flows: every stage of the stage table (tasks/stages.py) wired one way, the whole
pipeline, predict, export and the scheduled retrain. Thin: wiring only."""
