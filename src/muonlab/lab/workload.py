"""The Workload protocol: what is trained, separate from how (AlgoPerf-lite, ``spec.Workload``).

A workload is a dataclass whose fields are its *knobs* (width, depth, batch size, data, ...), each
with a typed default. It knows its model, data, loss and evaluation, and nothing about optimizers
or the training loop. The runner calls, in this order::

    wl = make_workload("tiny_gpt", width=256)     # knobs checked against the field types
    wl.setup(device)                              # load data (once), put it on the device
    model = wl.build_model(seed)                  # deterministic given seed and knobs
    batch = wl.get_batch(gen)                     # a training batch drawn with torch.Generator gen
    loss = wl.loss(model, batch)                  # scalar to minimise
    metrics = wl.evaluate(model)                  # {"val/loss": ..., ...}, on a fixed eval set

Batches come from a generator the runner owns, so checkpointing ``gen.get_state()`` makes a resumed
run draw exactly the batches the killed one would have (nanoGPT's ``get_batch``, made resumable).
Metric names follow AlgoPerf (``split/quantity``); ``metric`` names the headline one used for LR
sensitivity, the best-LR table and steps-to-target.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn


@dataclass
class Workload:
    """Base class of every workload; subclasses are dataclasses whose fields are the knobs.

    Class attributes:
        name: registry key (``muonlab list`` shows it).
        description: one line for ``muonlab list``.
        default_steps: training steps when the run does not say (chosen to take ~1 minute on
            2 CPU cores at the default knobs).
        eval_every: steps between evaluations (default for the runner).
        metric: headline metric; lower is better unless its name contains "acc".
        width_knobs: the knobs that set the model's width (default none). A µP run
            (``RunConfig.parametrization="mup"``) builds its base model by setting each of them to
            ``mup_base_width``; every other knob (vocabulary, heads, depth, ...) stays fixed.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    default_steps: ClassVar[int] = 500
    eval_every: ClassVar[int] = 50
    metric: ClassVar[str] = "val/loss"
    width_knobs: ClassVar[tuple[str, ...]] = ()

    def setup(self, device: torch.device) -> None:
        """Load the data and move it to ``device``; called once before training."""
        self.device = device

    def build_model(self, seed: int) -> nn.Module:
        """A freshly initialised model (on CPU), deterministic given ``seed`` and the knobs."""
        raise NotImplementedError

    def get_batch(self, gen: torch.Generator) -> Any:
        """One training batch on the device, drawn with ``gen`` (a CPU generator)."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        """The scalar training loss of ``model`` on ``batch``."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Metrics on a fixed evaluation set (called under ``torch.no_grad`` in eval mode)."""
        raise NotImplementedError

    def routing(self) -> dict[str, Any]:
        """Keyword arguments for :func:`muonlab.routing.classify` / ``create_optimizer``.

        Declares which parameters are the output layer, embeddings, or have another role, so that
        routing never guesses from shapes (as AlgoPerf's ``spec.ParameterType``). Default: let
        ``classify`` detect them.
        """
        return {}

    def knobs(self) -> dict[str, Any]:
        """The resolved knobs (all fields), for the run's config.json."""
        return dataclasses.asdict(self)

    def info(self) -> dict[str, Any]:
        """Extra provenance after :meth:`setup` (e.g. corpus size and hash); default none."""
        return {}


def knob_types(cls: type[Workload]) -> dict[str, Any]:
    """``{knob: type}`` of a workload class (string annotations resolved)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def coerce_knob(cls: type[Workload], key: str, value: Any) -> Any:
    """``value`` converted to the declared type of knob ``key``; ValueError if it does not fit.

    Keeps nanoGPT configurator's one good check (the override must have the default's type)
    while allowing an int where a float is declared and a string where a path is expected.
    """
    types = knob_types(cls)
    if key not in types:
        raise ValueError(f"unknown knob {key!r} for workload {cls.name!r}; knobs: {', '.join(types)}")
    want = types[key]
    origin = typing.get_origin(want) or want
    if origin is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin is bool and not isinstance(value, bool):
        raise ValueError(f"knob {key!r} of {cls.name!r} must be True or False, got {value!r}")
    if origin in (int, float, str, dict, list, tuple) and not isinstance(value, origin):
        if origin is str:
            return str(value)
        if origin is int and isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError(f"knob {key!r} of {cls.name!r} must be {origin.__name__}, got {value!r}")
    if origin is int and isinstance(value, bool):
        raise ValueError(f"knob {key!r} of {cls.name!r} must be int, got {value!r}")
    return value


def fixed_eval_generator(seed: int = 1234) -> torch.Generator:
    """A generator for the evaluation subset: fixed, and independent of the training stream."""
    return torch.Generator().manual_seed(seed)
