"""The shipped general-purpose Celo2 beats Adam(1e-3) on two offline-suite tasks in 300 steps."""

import numpy as np
import pytest

import lopt_core
from lopt_learned import load_pretrained
from lopt_optimizers import Adam
from lopt_outer.bench import run_curves

# Two held-out tasks of the offline suite, of two kinds (an MLP classifier and a VAE).
TASKS = ("ImageMLP_Digits8_Relu32", "ImageMLPVAE_Digits8_32_Latent8")
SEEDS = (0, 1)
STEPS = 300


def _final_test(task, make, shared):
    curves = run_curves(task, make, {}, shared, SEEDS, STEPS, num_evals=3, eval_batches=4)
    final = curves.split("test")[0, :, -1]
    assert final.shape == (len(SEEDS),) and np.isfinite(final).all()
    return float(final.mean())


@pytest.mark.parametrize("name", TASKS)
def test_shipped_celo2_reaches_a_lower_test_loss_than_adam_1e3(name):
    assert name in lopt_core.get_suite("offline").task_names
    loaded = load_pretrained("Celo2_General")
    task = lopt_core.get_task(name)
    celo2 = _final_test(task, lambda hp, horizon: loaded.lopt.opt_fn(hp["shared"]), loaded.theta)
    adam = _final_test(task, lambda hp, horizon: Adam(1e-3), None)
    assert celo2 < adam, (celo2, adam)
