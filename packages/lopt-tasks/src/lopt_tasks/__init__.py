"""lopt_tasks: datasets, tasks and task families for lopt.

Example:
  >>> import jax, lopt_tasks
  >>> task = lopt_tasks.ImageMLP_Digits8_Relu32()
  >>> params = task.init(jax.random.PRNGKey(0))
  >>> loss = task.loss(params, jax.random.PRNGKey(1), next(task.datasets.train))
"""

from lopt_tasks import digits, image_mlp, parametric, quadratics, tfds_data
from lopt_tasks._lazy import LazyArraySplit
from lopt_tasks.digits import digits_datasets, digits_split_indices
from lopt_tasks.image_mlp import (
    ImageMLP_Cifar10_8_Relu32,
    ImageMLP_Cifar10_128x128_Dropout05_Relu,
    ImageMLP_Cifar10_128x128x128_BatchNorm_Relu,
    ImageMLP_Cifar10_128x128x128_LayerNorm_Relu,
    ImageMLP_Cifar10_128x128x128_LayerNorm_Tanh,
    ImageMLP_Cifar10_128x128x128_Relu,
    ImageMLP_Cifar10_128x128x128_Tanh_bs128,
    ImageMLP_Cifar10BW8_Relu32,
    ImageMLP_Digits8_32_BatchNorm_Relu,
    ImageMLP_Digits8_32_LayerNorm_Relu,
    ImageMLP_Digits8_Relu32,
    ImageMLP_Digits8_Relu32x32_Dropout02,
    ImageMLP_Digits8_Tanh32,
    ImageMLP_FashionMnist8_Relu32,
    ImageMLP_FashionMnist16_Relu32,
    ImageMLP_FashionMnist_Relu128x128,
    ImageMLP_Mnist_128x128x128_Relu,
    ImageMLPNormTask,
    ImageMLPTask,
)
from lopt_tasks.parametric import (
    ImageConvFamily_Digits8,
    ImageFamilyConfig,
    ImageMLPFamily_Digits8,
    ParametricImageConv,
    ParametricImageMLP,
    SampledImageConvFamily,
    SampledImageMLPFamily,
    sample_image_conv,
    sample_image_mlp,
)
from lopt_tasks.quadratics import (
    BatchQuadraticTask,
    FixedDimQuadraticFamily,
    FixedDimQuadraticFamilyData,
    NoisyMeanQuadraticTask,
    NoisyQuadraticFamily,
    QuadraticTask,
)
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

__all__ = [
    "BatchQuadraticTask",
    "DatasetNotPreparedError",
    "FixedDimQuadraticFamily",
    "FixedDimQuadraticFamilyData",
    "ImageConvFamily_Digits8",
    "ImageFamilyConfig",
    "ImageMLPFamily_Digits8",
    "ImageMLPNormTask",
    "ImageMLPTask",
    "ImageMLP_Cifar10BW8_Relu32",
    "ImageMLP_Cifar10_128x128_Dropout05_Relu",
    "ImageMLP_Cifar10_128x128x128_BatchNorm_Relu",
    "ImageMLP_Cifar10_128x128x128_LayerNorm_Relu",
    "ImageMLP_Cifar10_128x128x128_LayerNorm_Tanh",
    "ImageMLP_Cifar10_128x128x128_Relu",
    "ImageMLP_Cifar10_128x128x128_Tanh_bs128",
    "ImageMLP_Cifar10_8_Relu32",
    "ImageMLP_Digits8_32_BatchNorm_Relu",
    "ImageMLP_Digits8_32_LayerNorm_Relu",
    "ImageMLP_Digits8_Relu32",
    "ImageMLP_Digits8_Relu32x32_Dropout02",
    "ImageMLP_Digits8_Tanh32",
    "ImageMLP_FashionMnist16_Relu32",
    "ImageMLP_FashionMnist8_Relu32",
    "ImageMLP_FashionMnist_Relu128x128",
    "ImageMLP_Mnist_128x128x128_Relu",
    "LazyArraySplit",
    "NoisyMeanQuadraticTask",
    "NoisyQuadraticFamily",
    "ParametricImageConv",
    "ParametricImageMLP",
    "QuadraticTask",
    "SampledImageConvFamily",
    "SampledImageMLPFamily",
    "cifar100_datasets",
    "cifar10_datasets",
    "digits",
    "digits_datasets",
    "digits_split_indices",
    "fashion_mnist_datasets",
    "image_classification_datasets",
    "image_mlp",
    "mnist_datasets",
    "parametric",
    "prepare_dataset",
    "quadratics",
    "sample_image_conv",
    "sample_image_mlp",
    "svhn_cropped_datasets",
    "tfds_data",
]
