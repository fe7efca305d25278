"""The work of each stage: pure, testable functions (wrapped as Prefect tasks by flows/)."""
