"""The work: each stage's pure, testable functions (run as Prefect tasks by flows/), the
stage table, the plugin registries (sources, feature sets) and the formats they write."""
