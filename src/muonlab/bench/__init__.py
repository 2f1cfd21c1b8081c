"""Benchmarks (not tests): optimizer step time and orthogonalization throughput, run side by side
with the anchors in one process. Entry points: ``muonlab bench step`` and ``muonlab bench orth``."""
