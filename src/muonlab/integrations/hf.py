"""Hugging Face ``transformers.Trainer`` with a muonlab optimizer (see docs/integrations.md).

``Trainer(optimizer_cls_and_kwargs=(cls, kwargs))`` cannot take a muonlab method: the Trainer
builds its own two weight-decay groups (every parameter, 1-D ones included) and hands them to
``cls``, so hidden matrices and embeddings/norms/biases could not get different rules. Two ways
plug into the Trainer's own hooks instead; either way the Trainer builds its LR scheduler
(warm-up, decay) on our optimizer, which scales every group's ``lr`` by the same factor, and
saves/loads ``optimizer.pt`` with checkpoints, so ``train(resume_from_checkpoint=...)`` resumes.

* :class:`MuonlabTrainer` overrides :meth:`transformers.Trainer.create_optimizer`, the hook the
  Trainer calls when it needs an optimizer (after it has placed, and under FSDP wrapped, the
  model)::

      trainer = MuonlabTrainer(model=model, args=args, train_dataset=ds,
                               muonlab_optimizer="muon",
                               muonlab_kwargs={"lr": 0.02, "adamw": {"lr": 3e-4}})

* :func:`optimizers` returns the ``(optimizer, None)`` pair for ``Trainer(optimizers=...)``; build
  it after moving the model to its device.

``TrainingArguments.learning_rate``, ``weight_decay`` and ``optim`` are not used: the optimizer's
hyperparameters are those given here (each method's recommended defaults otherwise).
"""

from __future__ import annotations

from typing import Any

import torch

from ..routing import create_optimizer

try:
    import transformers
except ImportError as e:  # pragma: no cover - exercised only without transformers
    raise ImportError("muonlab.integrations.hf needs transformers: pip install 'muonlab[hf]'") from e

__all__ = ["MuonlabTrainer", "optimizers"]


def optimizers(model: torch.nn.Module, name: str = "muon", **kwargs: Any) -> tuple[torch.optim.Optimizer, None]:
    """``(muonlab.create_optimizer(model, name, **kwargs), None)`` for ``Trainer(optimizers=...)``.

    The ``None`` lets the Trainer create its LR scheduler (``lr_scheduler_type``, warm-up) on the
    optimizer. Move the model to its device before calling this.
    """
    return create_optimizer(model, name, **kwargs), None


class MuonlabTrainer(transformers.Trainer):
    """A ``transformers.Trainer`` whose optimizer is ``muonlab.create_optimizer(model, ...)``.

    Args:
        muonlab_optimizer: a registered method name (``muonlab.available_optimizers()``),
            default ``"muon"``.
        muonlab_kwargs: keyword arguments of :func:`muonlab.create_optimizer` (``lr``,
            ``weight_decay``, ``adamw={...}``, ``overrides``, ``output``, ``summary``, ...).
        *args, **kwargs: those of ``transformers.Trainer``.
    """

    def __init__(self, *args: Any, muonlab_optimizer: str = "muon",
                 muonlab_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.muonlab_optimizer = muonlab_optimizer
        self.muonlab_kwargs = dict(muonlab_kwargs or {})
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        """The Trainer's hook: build the muonlab optimizer once (an ``optimizers=`` one is kept)."""
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            self.optimizer = create_optimizer(opt_model, self.muonlab_optimizer, **self.muonlab_kwargs)
        return self.optimizer
