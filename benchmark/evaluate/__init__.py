"""Evaluate: generation, judges, metrics, scores, probes and the NLP benchmarks."""
