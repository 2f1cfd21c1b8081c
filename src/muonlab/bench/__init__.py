"""Benchmarks (not tests): optimizer step time and orthogonalization throughput, run side by side
with the anchors in one process. Entry points: ``muonlab bench step``, ``muonlab bench orth`` and
``muonlab bench gpu`` (the prepared GPU suite, :mod:`muonlab.bench.gpu`)."""
