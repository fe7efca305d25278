"""The processes the pipeline runs around its work: DVC (repro, experiments, commit) and the
one local Prefect server every msaflow command shares."""
