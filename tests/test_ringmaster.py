"""Ringmaster ASGD / Ringmaster LMO simulator (muonlab.distributed.ringmaster).

Ringmaster ASGD: Maranjyan, Tyurin, Richtárik, arXiv 2501.16168 (gradients whose delay reaches
the threshold R are discarded). Ringmaster LMO: Sadiev, Maranjyan, Ilin, Richtárik, arXiv
2605.18174 (the same threshold, momentum + LMO server step). The event order below is worked out
by hand from the simulator's rules (compute at job start, deliver at start + τ, ties to the lower
worker id).
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from muonlab.distributed.ringmaster import (
    ExponentialTimes,
    FixedTimes,
    LMOServer,
    RingmasterSimulator,
    SGDServer,
    heterogeneous_times,
    lmo,
    parameter_agnostic,
)

F64 = torch.float64
TARGET = torch.linspace(-1, 1, 12, dtype=F64).reshape(4, 3)


def _params():
    return [torch.zeros(4, 3, dtype=F64), torch.zeros(3, dtype=F64)]


def grad_fn(p, gen, worker):
    """Noisy gradient of ½‖W − A‖² + ½‖b − 1‖²."""
    return [p[0] - TARGET + 0.1 * torch.randn(4, 3, generator=gen, dtype=F64),
            p[1] - 1 + 0.1 * torch.randn(3, generator=gen, dtype=F64)]


def loss_fn(p):
    return float(0.5 * (p[0] - TARGET).square().sum() + 0.5 * (p[1] - 1).square().sum())


def _lmo_server(**kw):
    return LMOServer(kw.pop("lr", 0.05), kw.pop("alpha", 0.5), orthogonalizer="svd", compute_dtype=None, **kw)


def _polar(G):
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    return U @ Vh


def _replay(server, seeds):
    """Sequential steps, each on a fresh gradient at the current iterate (the for-loop reference)."""
    x = _params()
    for k, seed in enumerate(seeds):
        g = grad_fn(x, torch.Generator().manual_seed(seed), 0)
        server.apply_(x, g, k)
    return x


@pytest.mark.parametrize("make_server", [lambda: SGDServer(0.1), _lmo_server])
def test_one_worker_has_zero_delays_and_equals_synchronous_steps(make_server):
    sim = RingmasterSimulator(_params(), grad_fn, [1.0], threshold=1, server=make_server(), seed=3)
    log = sim.run(max_updates=15)
    assert log.accepted == 15 and log.discarded == 0 and log.staleness == Counter({0: 15})
    ref = _replay(make_server(), [a.seed for a in log.arrivals])
    for p, q in zip(sim.params, ref):
        assert torch.equal(p, q)
    sync = RingmasterSimulator(_params(), grad_fn, [1.0], server=make_server(), mode="sync", seed=3)
    sync.run(max_updates=15)
    for p, q in zip(sim.params, sync.params):
        assert torch.equal(p, q)
    assert sync.time == sim.time == 15.0


def test_threshold_one_applies_only_fresh_gradients_as_sequential_steps():
    sim = RingmasterSimulator(_params(), grad_fn, heterogeneous_times(3, 1.0), threshold=1, server=_lmo_server(),
                              seed=0)
    log = sim.run(max_time=20.0)
    accepted = [a for a in log.arrivals if a.accepted]
    assert all(a.delay == 0 for a in accepted)
    assert log.discarded == sum(a.delay >= 1 for a in log.arrivals) > 0
    ref = _replay(_lmo_server(), [a.seed for a in accepted])
    for p, q in zip(sim.params, ref):
        assert torch.equal(p, q)


@pytest.mark.parametrize("R,accepted,staleness", [
    (3, 12, {0: 12, 3: 4}),          # worker 1 is always 3 versions behind: all of its 4 discarded
    (4, 16, {0: 9, 1: 3, 3: 4}),     # accepted; each of its updates makes worker 0's next one stale by 1
    (math.inf, 16, {0: 9, 1: 3, 3: 4}),
])
def test_delays_reaching_the_threshold_are_discarded_and_counted(R, accepted, staleness):
    """τ = (1, 3): worker 0 arrives at T = 1, 2, …, 12, worker 1 at T = 3, 6, 9, 12 (after worker 0
    at the ties), having started 3 updates earlier."""
    sim = RingmasterSimulator(_params(), grad_fn, FixedTimes([1.0, 3.0]), threshold=R, server=SGDServer(0.1))
    log = sim.run(max_time=12.0)
    assert [(a.time, a.worker) for a in log.arrivals][:5] == [(1.0, 0), (2.0, 0), (3.0, 0), (3.0, 1), (4.0, 0)]
    assert len(log.arrivals) == 16 and log.accepted == accepted and log.discarded == 16 - accepted
    assert log.staleness == Counter(staleness)
    assert sum(log.accepted_staleness.values()) == accepted
    assert all(a.accepted == (a.delay < R) for a in log.arrivals)
    assert sim.k == accepted and sim.time == 12.0


def test_staleness_distribution_and_reproducibility_from_the_seed():
    def run(seed):
        sim = RingmasterSimulator(_params(), grad_fn, ExponentialTimes([1.0, 2.0, 4.0, 8.0]), threshold=4,
                                  server=_lmo_server(), seed=seed, loss_fn=loss_fn, eval_every=5)
        return sim, sim.run(max_updates=40)

    a, log_a = run(7)
    b, log_b = run(7)
    _, log_c = run(8)
    assert log_a.arrivals == log_b.arrivals and log_a.losses == log_b.losses
    assert all(torch.equal(p, q) for p, q in zip(a.params, b.params))
    assert log_a.arrivals != log_c.arrivals
    assert sum(log_a.staleness.values()) == len(log_a.arrivals)
    assert log_a.staleness == Counter(x.delay for x in log_a.arrivals)
    assert max(log_a.accepted_staleness) <= 3 and log_a.discarded == sum(x.delay >= 4 for x in log_a.arrivals)
    assert [v for _, v, _ in log_a.losses] == list(range(0, 41, 5))
    times = [x.time for x in log_a.arrivals]
    assert times == sorted(times)
    # running on continues the same trajectory
    d, _ = run(7)
    d.run(max_updates=20)
    d.run(max_updates=40)
    assert d.log.arrivals == log_a.arrivals


def test_lmo_server_step():
    g0 = [torch.randn(4, 3, dtype=F64), torch.randn(3, dtype=F64)]
    for vector in ("sign", "l2", "adam"):
        x = _params()
        server = _lmo_server(lr=0.1, alpha=0.3, vector=vector)
        server.apply_(x, g0, 0)
        torch.testing.assert_close(x[0], -0.1 * math.sqrt(4 / 3) * _polar(g0[0]))  # m = αg: same polar factor
        expect = {"sign": -torch.sign(g0[1]), "l2": -g0[1] / g0[1].norm(),
                  "adam": -(0.3 * g0[1]) / (g0[1].abs() + 1e-8)}[vector]
        torch.testing.assert_close(x[1], 0.1 * expect)
        torch.testing.assert_close(server.m[0], 0.3 * g0[0])
    # a matrix LMO minimises ⟨m, u⟩ over the spectral ball: ⟨m, lmo(m)⟩ = −s·‖m‖_*
    m = torch.randn(5, 2, dtype=F64)
    u = lmo(m, orthogonalizer="svd", adjust_lr_fn="none", compute_dtype=None)
    torch.testing.assert_close((m * u).sum(), -torch.linalg.matrix_norm(m, "nuc"))
    with pytest.raises(ValueError, match="vector='max'"):
        LMOServer(vector="max")


def test_ringmaster_lmo_and_baselines_reduce_the_loss():
    for mode, R in (("async", 3), ("async", math.inf), ("sync", math.inf)):
        sim = RingmasterSimulator(_params(), grad_fn, heterogeneous_times(4, 0.5), threshold=R,
                                  server=_lmo_server(lr=0.05, alpha=0.3), mode=mode, loss_fn=loss_fn, eval_every=10)
        log = sim.run(max_updates=60)
        assert log.losses[-1][2] < 0.1 * log.losses[0][2], (mode, R)
    sync = RingmasterSimulator(_params(), grad_fn, heterogeneous_times(4, 1.0), mode="sync", server=SGDServer(0.1))
    sync.run(max_updates=5)
    assert sync.time == 20.0 and len(sync.log.arrivals) == 20  # each round waits for the slowest (τ = 4)


def test_parameter_agnostic_schedules_and_validation():
    sched = parameter_agnostic(0.1, 2.0)
    assert sched["lr"](0) == 0.1 and sched["alpha"](3) == 0.5 and sched["threshold"](3) == 4
    sim = RingmasterSimulator(_params(), grad_fn, heterogeneous_times(3, 1.0), threshold=sched["threshold"],
                              server=LMOServer(sched["lr"], sched["alpha"], orthogonalizer="svd", compute_dtype=None))
    log = sim.run(max_updates=30)
    assert all(a.accepted == (a.delay < sched["threshold"](a.version - a.accepted)) for a in log.arrivals)
    assert heterogeneous_times(3, 1.0).taus == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="threshold=0"):
        RingmasterSimulator(_params(), grad_fn, [1.0], threshold=0)
    with pytest.raises(ValueError, match="mode='ring'"):
        RingmasterSimulator(_params(), grad_fn, [1.0], mode="ring")
    with pytest.raises(ValueError, match="taus"):
        FixedTimes([1.0, -1.0])
    with pytest.raises(ValueError, match="max_updates"):
        RingmasterSimulator(_params(), grad_fn, [1.0]).run()
