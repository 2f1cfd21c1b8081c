"""The lab: workloads, one training loop, LR sweeps over seeds, and reports.

Four roles kept apart (AlgoPerf's spec/submission/runner/scoring split; github
mlcommons/algorithmic-efficiency ``algoperf/spec.py``, ``submission_runner.py``, ``scoring/``):

* :mod:`.workloads`  what is trained: a model, its data, its loss and its evaluation;
* the optimizer comes from :mod:`muonlab.registry` (or an import path, :mod:`.external`);
* :mod:`.runner` / :mod:`.sweep`  the one flat training loop and the grid around it;
* :mod:`.records` / :mod:`.report`  tidy JSONL records with provenance, and pure functions from
  records to tables, statistics and plots.

Example::

    from muonlab.lab import RunConfig, run_one, write_report
    run_one(RunConfig("tiny_gpt", "muon", steps=200), "runs/x")
    write_report("runs/x")
"""

from .records import load_runs
from .report import write_report
from .runner import RunConfig, run_one
from .sweep import lr_grid, sweep
from .workloads import available_workloads, make_workload

__all__ = [
    "RunConfig",
    "available_workloads",
    "load_runs",
    "lr_grid",
    "make_workload",
    "run_one",
    "sweep",
    "write_report",
]
