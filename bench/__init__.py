"""Benchmarks: speed and resource figures, each reported against the goal it answers to.

Never timed tests: figures are printed and written under `bench/results/`."""
