"""Older spellings hold however a class is imported, not only through its package."""

import subprocess
import sys
import textwrap


def test_old_spellings_hold_when_a_class_is_imported_from_its_own_module():
    code = textwrap.dedent(
        """
        from lopt_learned.rnn_mlp_lopt import RNNMLPLOpt
        from lopt_optimizers.optimizers import Adam
        from lopt_tasks.digits import digits_datasets
        from lopt_tasks.parametric import ParametricImageMLP
        from lopt_outer.truncated_pes import TruncatedPES
        print(RNNMLPLOpt(step_multiplier=0.5).step_mult, Adam(beta1=0.8).beta1)
        print(ParametricImageMLP(digits_datasets(8), hidden_layers=(8,)).hidden_sizes)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[:2] == ["0.5 0.8", "(8,)"]
