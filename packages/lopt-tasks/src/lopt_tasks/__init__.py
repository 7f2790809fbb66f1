"""lopt_tasks: datasets, tasks and task families for lopt.

Example:
  >>> import jax, lopt_tasks
  >>> task = lopt_tasks.ImageMLP_Digits8_Relu32()
  >>> params = task.init(jax.random.PRNGKey(0))
  >>> loss = task.loss(params, jax.random.PRNGKey(1), next(task.datasets.train))
"""

from typing import Any

from lopt_tasks import (  # noqa: F401 (_cli declares the `lopt data` command)
    _cli,
    adapters,
    compat,
    conv,
    digits,
    generative,
    image_mlp,
    lm,
    parametric,
    quadratics,
    text,
    tfds_data,
)
from lopt_tasks._lazy import LazyArraySplit
from lopt_tasks._plugin import CATALOG
from lopt_tasks.adapters import (
    HaikuTask,
    LinenTask,
    NNXTask,
    cross_entropy_loss,
    task_from_haiku,
    task_from_linen,
    task_from_nnx,
)
from lopt_tasks.conv import ConvTask
from lopt_tasks.digits import digits_datasets, digits_split_indices
from lopt_tasks.generative import ImageMLPAutoencoderTask, ImageMLPVAETask
from lopt_tasks.image_mlp import ImageMLPNormTask, ImageMLPTask
from lopt_tasks.lm import (
    LSTMLanguageModelTask,
    ParametricLMRNN,
    TransformerLanguageModelTask,
    sample_lm_rnn,
)
from lopt_tasks.parametric import (
    ImageFamilyConfig,
    ParametricImageConv,
    ParametricImageMLP,
    sample_image_conv,
    sample_image_mlp,
)
from lopt_tasks.text import embedded_corpus, embedded_text_datasets, tfds_text_datasets
from lopt_tasks.tfds_data import (
    DatasetNotPreparedError,
    cifar10_datasets,
    cifar100_datasets,
    fashion_mnist_datasets,
    image_classification_datasets,
    mnist_datasets,
    prepare_dataset,
    svhn_cropped_datasets,
)


def _declared() -> dict[str, Any]:
    """Every public class and function the catalog declares, by its Python name."""
    return {
        factory.__name__: factory
        for kind in ("tasks", "task_families")
        for factory in CATALOG.factories(kind).values()
    }


# The named tasks and families are published from the catalog: declaring one is all it
# takes to register it, list it in `__all__` and have the contract tests check it.
globals().update(_declared())

__all__ = [
    "CATALOG",
    "ConvTask",
    "DatasetNotPreparedError",
    "HaikuTask",
    "ImageFamilyConfig",
    "ImageMLPAutoencoderTask",
    "ImageMLPNormTask",
    "ImageMLPTask",
    "ImageMLPVAETask",
    "LSTMLanguageModelTask",
    "LazyArraySplit",
    "LinenTask",
    "NNXTask",
    "ParametricImageConv",
    "ParametricImageMLP",
    "ParametricLMRNN",
    "TransformerLanguageModelTask",
    "adapters",
    "cifar100_datasets",
    "cifar10_datasets",
    "compat",
    "conv",
    "cross_entropy_loss",
    "digits",
    "digits_datasets",
    "digits_split_indices",
    "embedded_corpus",
    "embedded_text_datasets",
    "fashion_mnist_datasets",
    "generative",
    "image_classification_datasets",
    "image_mlp",
    "lm",
    "mnist_datasets",
    "parametric",
    "prepare_dataset",
    "quadratics",
    "sample_image_conv",
    "sample_image_mlp",
    "sample_lm_rnn",
    "svhn_cropped_datasets",
    "task_from_haiku",
    "task_from_linen",
    "task_from_nnx",
    "text",
    "tfds_data",
    "tfds_text_datasets",
]
__all__ += CATALOG.exported_names()
