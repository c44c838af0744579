"""Run an experiment: spec and plan, splits, execution, analyses, sweeps and suites."""
