"""A small meta-training problem for the Ray tests.

It is real lopt components end to end: a registered quadratic task family
from lopt-tasks, `VectorizedLOptTruncatedStep`, `TruncatedPES` and the registered
Adam as the meta-optimizer. The learned optimizer is a per-parameter learning rate
and momentum defined here, small so that each worker compiles in about a second.
"""

from __future__ import annotations

import ipaddress
import os
import time
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

import lopt_core
from lopt_outer.gradient_learner import SingleMachineGradientLearner
from lopt_outer.lopt_truncated_step import VectorizedLOptTruncatedStep
from lopt_outer.truncated_pes import TruncatedPES
from lopt_outer.truncation_schedule import ConstantTruncationSchedule


@flax.struct.dataclass
class MomentumState:
    params: Any
    model_state: Any
    momentum: Any
    iteration: jax.Array


class LearnedMomentumSGD(lopt_core.Optimizer):
    """SGD with momentum whose log learning rate and momentum logit are theta."""

    def __init__(self, theta: Any) -> None:
        self.theta = theta

    def init(self, params, model_state=None, num_steps=None, key=None, **kwargs):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return MomentumState(params, model_state, zeros, jnp.asarray(0, jnp.int32))

    def update(self, opt_state, grads, loss=None, model_state=None, key=None, **kwargs):
        lr = jnp.exp(self.theta["log_lr"])
        beta = jax.nn.sigmoid(self.theta["momentum_logit"])
        mom = jax.tree_util.tree_map(lambda m, g: beta * m + g, opt_state.momentum, grads)
        params = jax.tree_util.tree_map(lambda p, m: p - lr * m, opt_state.params, mom)
        return MomentumState(params, model_state, mom, opt_state.iteration + 1)


class LearnableMomentumSGD(lopt_core.LearnedOptimizer):
    """theta = {log_lr, momentum_logit}."""

    def init(self, key):
        del key
        return {
            "log_lr": jnp.asarray(jnp.log(0.05), jnp.float32),
            "momentum_logit": jnp.asarray(0.0, jnp.float32),
        }

    def opt_fn(self, theta, is_training=False):
        return LearnedMomentumSGD(theta)


def make_learner(
    num_tasks: int = 4, trunc_length: int = 5, family: Any = None
) -> SingleMachineGradientLearner:
    """A PES learner (20-step truncations) on `family`, by default the registered 4-d
    quadratic family."""
    if family is None:
        family = lopt_core.get_task_family("FixedDimQuadraticFamily", dim=4)
    step = VectorizedLOptTruncatedStep(
        family, LearnableMomentumSGD(), ConstantTruncationSchedule(20), num_tasks
    )
    pes = TruncatedPES(step, trunc_length=trunc_length, std=0.01)
    theta_opt = lopt_core.get_optimizer("Adam", learning_rate=3e-2)
    return SingleMachineGradientLearner(LearnableMomentumSGD(), [pes], theta_opt)


class EstimatorThatCannotStart(lopt_core.GradientEstimator):
    """An estimator whose worker state cannot be built (a worker that fails to start)."""

    def __init__(self, truncated_step: Any) -> None:
        self.truncated_step = truncated_step

    def init_worker_state(self, worker_weights, key):
        raise ValueError("this estimator cannot build a worker state")

    def compute_gradient_estimate(self, worker_weights, key, state, with_summary=False):
        raise AssertionError("never reached: the worker state cannot be built")


class SlowEstimator(lopt_core.GradientEstimator):
    """Another estimator, slowed by `delay_s` per estimate so that workers overlap in time."""

    def __init__(self, inner: lopt_core.GradientEstimator, delay_s: float) -> None:
        self.inner = inner
        self.truncated_step = inner.truncated_step
        self.delay_s = delay_s

    def init_worker_state(self, worker_weights, key):
        return self.inner.init_worker_state(worker_weights, key)

    def compute_gradient_estimate(self, worker_weights, key, state, with_summary=False):
        time.sleep(self.delay_s)
        return self.inner.compute_gradient_estimate(worker_weights, key, state, with_summary)


def leaves(tree: Any) -> list[np.ndarray]:
    """The leaves of a pytree as numpy arrays, for exact comparisons."""
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


class EstimatorWithAGenerator(SlowEstimator):
    """An estimator holding a generator, which no pickler can send to a worker."""

    def __init__(self, inner: lopt_core.GradientEstimator) -> None:
        super().__init__(inner, delay_s=0.0)
        self.batches = (i for i in range(3))


def family_results(family: Any, seed: int) -> dict[str, Any]:
    """One sampled task of `family`: its cfg, params, a keyed batch and the loss, as numpy.

    Ray workers run this on their copy of the family; the test compares with the driver.
    """
    k_cfg, k_init, k_data, k_loss = jax.random.split(jax.random.PRNGKey(seed), 4)
    cfg = family.sample(k_cfg)
    task = family.task_fn(cfg)
    params, state = task.init_with_state(k_init)
    batch = None if task.datasets is None else task.datasets.sample("train", k_data)
    loss, _ = task.loss_with_state(params, state, k_loss, batch)
    out = {"cfg": cfg, "params": params, "batch": batch, "loss": loss}
    return jax.tree_util.tree_map(np.asarray, jax.device_get(out))


def is_loopback(address: str) -> bool:
    """Whether an IPv4 or IPv6 address (IPv4-mapped included) is a loopback address."""
    ip = ipaddress.ip_address(address.split("%")[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def descendants() -> set[int]:
    """The process ids of this process's descendants (children, their children, ...)."""
    parents = {}
    for d in Path("/proc").iterdir():
        try:
            stat = (d / "stat").read_text() if d.name.isdigit() else ""
        except OSError:
            continue
        if stat:
            # Fields after the command name in parentheses: state, ppid, ...
            parents[int(d.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    ours: set[int] = set()
    frontier = {os.getpid()}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - ours
        ours |= frontier
    return ours


def listening_sockets(pids: set[int]) -> list[tuple[str, int, int]]:
    """`(address, port, pid)` of each TCP socket in LISTEN state that a process in
    `pids` owns: psutil's `net_connections` where psutil is installed, else read from
    /proc/net/tcp and /proc/net/tcp6."""
    try:
        import psutil
    except ImportError:
        return _proc_listening_sockets(pids)
    return [
        (c.laddr.ip, c.laddr.port, c.pid)
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.pid in pids
    ]


def _proc_listening_sockets(pids: set[int]) -> list[tuple[str, int, int]]:
    owner = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    owner[target[8:-1]] = pid
        except OSError:
            continue  # the process ended meanwhile
    out = []
    for table, width in (("tcp", 4), ("tcp6", 16)):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] != "0A" or cols[9] not in owner:  # state 0A: LISTEN
                continue
            hex_ip, hex_port = cols[1].split(":")
            raw = bytes.fromhex(hex_ip)
            # The kernel prints each 32-bit word of the address in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, width, 4))
            out.append((str(ipaddress.ip_address(raw)), int(hex_port, 16), owner[cols[9]]))
    return out
