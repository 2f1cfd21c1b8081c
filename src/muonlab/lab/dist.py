"""The lab runner under ``torchrun``: everything that differs when a run has more than one rank.

:func:`setup` returns a :class:`RunDist` that the loop of :func:`muonlab.lab.runner.run_one` calls
unconditionally; in one process (no torchrun, or ``WORLD_SIZE=1``) every method is the identity or
the runner's single-process code, and :mod:`muonlab.distributed` is not even imported, so a plain run
is exactly what it was. Under ``torchrun --nproc_per_node=N`` (see docs/distributed.md):

* the process group comes from torchrun's environment (:func:`muonlab.distributed.init_from_env`);
* the model is wrapped in DDP or FSDP2 before the optimizers are built (on ``model.module`` for DDP);
* every rank draws the same global batch from the same generator and trains on its slice;
* the recorded training loss is the mean over ranks, so a non-finite loss stops every rank;
* every rank evaluates (FSDP2's forward is collective) and only rank 0 writes records;
* checkpoints are DCP directories (``checkpoint/step=K``, named by the atomically written
  ``checkpoint/latest``) holding the generator and RNG states in ``extra``; they load into any
  world size, a single process included.

The run directory must be on a filesystem every rank sees (torchrun ``--standalone``: one node).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .records import load_checkpoint, save_checkpoint, write_atomic

STRATEGIES = ("auto", "ddp", "fsdp2")
CKPT_FILE = "checkpoint.pt"  # one process: torch.save of the whole state
CKPT_DIR = "checkpoint"  # several ranks: DCP directories step=K plus the pointer file `latest`


@dataclass(frozen=True)
class RunDist:
    """The run's place in the job: ``strategy`` ("none" in one process, else "ddp"/"fsdp2"),
    ``rank`` of ``world_size``, and the ``device`` torchrun assigned (None in one process)."""

    strategy: str = "none"
    rank: int = 0
    world_size: int = 1
    device: torch.device | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Rank 0 (or the only process): the one that writes records."""
        return self.rank == 0

    def record(self) -> dict[str, Any]:
        """What config.json notes about the job (nothing in one process)."""
        return {"distributed": {"strategy": self.strategy, "world_size": self.world_size}} if self.distributed else {}

    # ---- model, data, loss ----

    def wrap(self, model: nn.Module) -> tuple[nn.Module, nn.Module]:
        """``(model to train and evaluate, module whose parameters the optimizers get)``."""
        if not self.distributed:
            return model, model
        from ..distributed import wrap_model

        wrapped = wrap_model(model, self.strategy)
        return wrapped, (wrapped.module if self.strategy == "ddp" else wrapped)

    def shard(self, batch: Any) -> Any:
        """This rank's slice of the global batch (the global batch itself in one process)."""
        if not self.distributed:
            return batch
        from ..distributed import shard_batch

        return shard_batch(batch)

    def mean(self, value: float) -> float:
        """Mean of ``value`` over ranks: every rank gets the same number (``value`` in one process)."""
        if not self.distributed:
            return value
        from ..distributed import reduce_mean

        return reduce_mean(value)

    # ---- checkpoints: torch.save in one process, DCP with several ranks ----

    def save(self, run_dir: Path, model: nn.Module, optimizers: list[torch.optim.Optimizer],
             state: dict[str, Any]) -> None:
        """Save model, optimizers and ``state`` (step, generator, RNG, ...) atomically."""
        if not self.distributed:
            save_checkpoint(run_dir / CKPT_FILE, {"model": model.state_dict(),
                                                  "optimizers": [o.state_dict() for o in optimizers], **state})
            _remove_dcp(run_dir)  # a checkpoint a torchrun job left behind is now older
            return
        root = run_dir / CKPT_DIR
        name = f"step={state['step']}"
        _dcp_save(root / name, model, optimizers, state)  # collective; ends in a barrier
        if self.main:
            write_atomic(root / "latest", name)  # the switch: the old checkpoint or the new, whole
            for old in root.glob("step=*"):
                if old.name != name:
                    shutil.rmtree(old, ignore_errors=True)
            (run_dir / CKPT_FILE).unlink(missing_ok=True)
        _barrier()

    def load(self, run_dir: Path, model: nn.Module, optimizers: list[torch.optim.Optimizer]) -> dict[str, Any] | None:
        """Restore model and optimizers from the run's checkpoint; its ``state``, or None if none.

        A DCP checkpoint (from torchrun) loads into any world size; ``checkpoint.pt`` (from one
        process) only into one process.
        """
        latest = run_dir / CKPT_DIR / "latest"
        if latest.exists():
            return _dcp_load(run_dir / CKPT_DIR / latest.read_text().strip(), model, optimizers)
        if self.distributed:
            if (run_dir / CKPT_FILE).exists():
                raise ValueError(f"{run_dir / CKPT_FILE} was written by a single process; resume it "
                                 "without torchrun (or delete it to start over)")
            return None
        ckpt = load_checkpoint(run_dir / CKPT_FILE)
        if ckpt is None:
            return None
        model.load_state_dict(ckpt.pop("model"))
        for opt, st in zip(optimizers, ckpt.pop("optimizers")):
            opt.load_state_dict(st)
        return ckpt

    def remove_checkpoint(self, run_dir: Path) -> None:
        """Delete the run's checkpoint (rank 0; the run is finished)."""
        if self.main:
            (run_dir / CKPT_FILE).unlink(missing_ok=True)
            _remove_dcp(run_dir)


def setup(strategy: str = "auto", device: str = "auto") -> RunDist:
    """Join torchrun's job when there is one (``WORLD_SIZE`` > 1); a single-process RunDist otherwise.

    Args:
        strategy: "ddp", "fsdp2", or "auto" (ddp); it only matters under torchrun.
        device: the run's device setting; under torchrun "auto"/"cuda" mean ``cuda:LOCAL_RANK``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"dist={strategy!r} is not valid; choose one of {', '.join(STRATEGIES)}")
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return RunDist()
    from ..distributed import init_from_env

    info = init_from_env(device={"auto": None, "cpu": "cpu"}.get(device, "cuda"))
    if not info.distributed:
        return RunDist()
    return RunDist("ddp" if strategy == "auto" else strategy, info.rank, info.world_size, info.device)


# ---- DCP with several optimizers (muonlab.distributed.save_checkpoint takes one) ------------------

def _dcp_save(path: Path, model: nn.Module, optimizers: list[torch.optim.Optimizer], state: dict) -> None:
    if len(optimizers) == 1:
        from ..distributed import save_checkpoint as dcp_save

        dcp_save(path, model, optimizers[0], extra=state)
        return
    import pickle

    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    from ..distributed import check_state_symmetric

    for opt in optimizers:
        check_state_symmetric(opt)
    msd, osd = get_state_dict(model, optimizers)
    dcp.save({"model": msd, "optim": osd, "extra": pickle.dumps(state)}, checkpoint_id=str(path))


def _dcp_load(path: Path, model: nn.Module, optimizers: list[torch.optim.Optimizer]) -> dict:
    import torch.distributed as dist

    if len(optimizers) == 1:
        from ..distributed import load_checkpoint as dcp_load

        return dcp_load(path, model, optimizers[0])
    import pickle
    import warnings

    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    msd, osd = get_state_dict(model, optimizers)
    state = {"model": msd, "optim": osd, "extra": b""}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, checkpoint_id=str(path), no_dist=not dist.is_initialized())
    set_model_state_dict(model, state["model"])
    # Not strict: an external optimizer without state (torch.optim.SGD, momentum 0) saved none.
    set_optimizer_state_dict(model, optimizers, state["optim"], options=StateDictOptions(strict=False))
    return pickle.loads(state["extra"])


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()


def _remove_dcp(run_dir: Path) -> None:
    if (run_dir / CKPT_DIR).is_dir():
        shutil.rmtree(run_dir / CKPT_DIR, ignore_errors=True)


def finish() -> bool:
    """Leave torchrun's process group if one was joined; True on rank 0 (or in one process)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return True
    main = dist.get_rank() == 0
    # Every rank reaches teardown before any destroys its group: gloo aborts a rank ("terminate
    # called without an active exception") whose peer tears down while it is still working.
    dist.barrier()
    dist.destroy_process_group()
    return main

