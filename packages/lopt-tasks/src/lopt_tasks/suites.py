"""The evaluation suites lopt-tasks ships: one that runs offline, one over TFDS data.

`offline` needs no network and no prepared data: image MLPs of several widths and
depths, with and without normalisation layers, conv nets, an autoencoder and a VAE
on the embedded 8x8 digits; byte-level LSTM and Transformer LMs on the Python
standard library's sources (split by file, so 5,000 steps do not memorise the
test split, as they do the embedded prose); tabular classification and regression
on scikit-learn's bundled datasets; a quadratic and Rosenbrock; and a flax.linen
model through the model adapters.

`tfds` is the larger suite for users who have prepared MNIST, Fashion-MNIST,
CIFAR-10 and LM1B (`lopt data prepare NAME`).

Baselines for a suite are cached by its name and version (`lopt bench baselines
--suite NAME`); change a suite's tasks, horizons or seeds and bump its version.
"""

from __future__ import annotations

from lopt_core import Suite, SuiteTask
from lopt_tasks._plugin import CATALOG

#: (task name, kind) of the offline suite.
OFFLINE_TASKS: tuple[tuple[str, str], ...] = (
    ("ImageMLP_Digits8_Relu32", "image_mlp"),
    ("ImageMLP_Digits8_Tanh32", "image_mlp"),
    ("ImageMLP_Digits8_Relu32x32_Dropout02", "image_mlp"),
    ("ImageMLP_Digits8_32_LayerNorm_Relu", "image_mlp"),
    ("ImageMLP_Digits8_32_BatchNorm_Relu", "image_mlp"),
    ("Conv_Digits8_16x32", "conv"),
    ("Conv_Digits8_16x32_BatchNorm", "conv"),
    ("ImageMLPAE_Digits8_32x8x32", "autoencoder"),
    ("ImageMLPVAE_Digits8_32_Latent8", "vae"),
    ("LSTMLM_PyStdlib_Embed32_LSTM64", "lm"),
    ("TransformerLM_PyStdlib_2x32", "lm"),
    ("MLP_BreastCancer_32", "tabular"),
    ("MLP_Wine_32", "tabular"),
    ("MLP_Diabetes_32", "tabular"),
    ("QuadraticTask", "synthetic"),
    ("Rosenbrock_10D", "synthetic"),
    ("FlaxLinenMLP_Digits8_32x32", "flax"),
)

#: (task name, kind) of the TFDS suite.
TFDS_TASKS: tuple[tuple[str, str], ...] = (
    ("ImageMLP_Mnist_128x128x128_Relu", "image_mlp"),
    ("ImageMLP_FashionMnist8_Relu32", "image_mlp"),
    ("ImageMLP_FashionMnist_Relu128x128", "image_mlp"),
    ("ImageMLP_Cifar10_8_Relu32", "image_mlp"),
    ("ImageMLP_Cifar10_128x128x128_LayerNorm_Relu", "image_mlp"),
    ("Conv_Cifar10_8_16x32", "conv"),
    ("Conv_Cifar10_32x64x64", "conv"),
    ("Conv_Cifar10_32x64x64_batchnorm", "conv"),
    ("ImageMLPAE_Mnist_128x32x128_bs128", "autoencoder"),
    ("ImageMLPVAE_Mnist_128_Latent32", "vae"),
    ("RNNLM_lm1bbytes_Patch32_LSTM128_Embed64", "lm"),
    ("RNNLM_lm1bbytes_Patch32_GRU128_Embed64", "lm"),
    ("TransformerLM_LM1B_Bytes_4x128", "lm"),
)


def _tasks(table: tuple[tuple[str, str], ...]) -> tuple[SuiteTask, ...]:
    return tuple(SuiteTask(name, kind) for name, kind in table)


@CATALOG.suite("offline")
def OfflineSuite() -> Suite:
    """17 tasks of 8 kinds on data that ships offline; horizons 200, 1000, 5000; 3 seeds."""
    return Suite(
        "offline",
        "1",
        _tasks(OFFLINE_TASKS),
        horizons=(200, 1000, 5000),
        seeds=3,
        description="17 offline tasks (digits, stdlib-code LMs, sklearn tabular, synthetic, flax)",
    )


@CATALOG.suite("tfds")
def TFDSSuite() -> Suite:
    """13 tasks on MNIST, Fashion-MNIST, CIFAR-10 and LM1B bytes (prepared TFDS data)."""
    return Suite(
        "tfds",
        "1",
        _tasks(TFDS_TASKS),
        horizons=(200, 1000, 5000),
        seeds=3,
        description="13 tasks on prepared TFDS data (MNIST, Fashion-MNIST, CIFAR-10, LM1B)",
    )
