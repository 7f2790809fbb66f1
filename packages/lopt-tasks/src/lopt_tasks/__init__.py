"""lopt_tasks: datasets, tasks and task families for lopt.

Example:
  >>> import jax, lopt_tasks
  >>> task = lopt_tasks.ImageMLP_Digits8_Relu32()
  >>> params = task.init(jax.random.PRNGKey(0))
  >>> loss = task.loss(params, jax.random.PRNGKey(1), next(task.datasets.train))
"""

from lopt_core.lazy import attach, indexed_exports

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "LazyArraySplit": "_lazy",
        "CATALOG": "_plugin",
        "HaikuTask": "adapters",
        "LinenTask": "adapters",
        "NNXTask": "adapters",
        "cross_entropy_loss": "adapters",
        "task_from_haiku": "adapters",
        "task_from_linen": "adapters",
        "task_from_nnx": "adapters",
        "ConvTask": "conv",
        "digits_datasets": "digits",
        "digits_split_indices": "digits",
        "ImageMLPAutoencoderTask": "generative",
        "ImageMLPVAETask": "generative",
        "ImageMLPNormTask": "image_mlp",
        "ImageMLPTask": "image_mlp",
        "LSTMLanguageModelTask": "lm",
        "ParametricLMRNN": "lm",
        "TransformerLanguageModelTask": "lm",
        "sample_lm_rnn": "lm",
        "ImageFamilyConfig": "parametric",
        "ParametricImageConv": "parametric",
        "ParametricImageMLP": "parametric",
        "sample_image_conv": "parametric",
        "sample_image_mlp": "parametric",
        "embedded_corpus": "text",
        "embedded_text_datasets": "text",
        "tfds_text_datasets": "text",
        "DatasetNotPreparedError": "tfds_data",
        "cifar100_datasets": "tfds_data",
        "cifar10_datasets": "tfds_data",
        "fashion_mnist_datasets": "tfds_data",
        "image_classification_datasets": "tfds_data",
        "mnist_datasets": "tfds_data",
        "prepare_dataset": "tfds_data",
        "svhn_cropped_datasets": "tfds_data",
    }
    | indexed_exports(__name__, "lopt_tasks._plugin:CATALOG"),
    (
        "_cli",
        "adapters",
        "compat",
        "conv",
        "digits",
        "generative",
        "image_mlp",
        "lm",
        "parametric",
        "quadratics",
        "text",
        "tfds_data",
    ),
    catalog="CATALOG",
)
