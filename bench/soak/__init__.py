"""The fault-injection soak (`tasksync soak`): simulated users on both sides, processes killed,
the broker stopped, Salesforce failing; then the checks that nothing was lost, doubled, left
divergent, echoed or wrongly parked. `run.py` runs it; docs/benchmarks.md describes it."""
