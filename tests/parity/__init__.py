"""Parity suite: each registered method against the pip-installable implementations of it
(docs/methods/parity.md lists every pair, its configuration, tolerance and explanation)."""
