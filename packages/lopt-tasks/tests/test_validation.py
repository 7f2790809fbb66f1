"""Constructors check their arguments and name the argument, the value and the fix."""

import haiku as hk
import jax
import pytest

from lopt_core import Datasets
from lopt_tasks import (
    ConvTask,
    HaikuTask,
    ImageMLP_Digits8_32_BatchNorm_Relu,
    ImageMLPNormTask,
    ImageMLPTask,
    ImageMLPVAETask,
    LSTMLanguageModelTask,
    NoisyMeanQuadraticTask,
    NoisyQuadraticFamily,
    ParametricImageMLP,
    SampledImageMLPFamily,
    TransformerLanguageModelTask,
    digits_datasets,
    embedded_text_datasets,
    image_classification_datasets,
)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (
            lambda ds: ImageMLPTask(ds, [32, 0]),
            ValueError,
            r"ImageMLPTask: hidden_sizes\[1\] must be a positive integer, got 0\.",
        ),
        (
            lambda ds: ImageMLPTask(ds, 32),
            TypeError,
            r"ImageMLPTask: hidden_sizes must be a sequence of positive integers such as \(32, 32\)",
        ),
        (
            lambda ds: ImageMLPTask(ds, [8], dropout_rate=1.0),
            ValueError,
            r"ImageMLPTask: dropout_rate must be a finite number >= 0.0 and < 1.0, got 1.0",
        ),
        (
            lambda ds: ImageMLPTask(ds, [8], act_fn="swish"),
            ValueError,
            r"ImageMLPTask: act_fn must be one of 'relu', 'tanh', .*got 'swish'",
        ),
        (
            lambda ds: ImageMLPNormTask(ds, [8], "group_norm"),
            ValueError,
            r"ImageMLPNormTask: norm_type must be one of 'layer_norm', 'batch_norm', "
            r"got 'group_norm'",
        ),
        (
            lambda ds: ConvTask(ds, [8], pool="sum"),
            ValueError,
            r"ConvTask: pool must be one of 'avg', 'max', got 'sum'",
        ),
        (
            lambda ds: ImageMLPVAETask(ds, [8], 0),
            ValueError,
            r"ImageMLPVAETask: latent_size must be a positive integer, got 0",
        ),
        (
            lambda ds: ImageMLPTask(None, [8]),
            TypeError,
            r"ImageMLPTask: datasets must be a lopt_core.Datasets .*got NoneType",
        ),
        (
            lambda ds: ImageMLPTask(embedded_text_datasets(4, 8), [8]),
            ValueError,
            r"ImageMLPTask: datasets.extra_info has no 'num_classes' .*pass extra_info=",
        ),
        (
            lambda ds: ParametricImageMLP(Datasets([], [], [], []), num_classes=10),
            ValueError,
            r"ParametricImageMLP: datasets.abstract_batch is None.*Pass abstract_batch=",
        ),
        (
            lambda ds: HaikuTask(hk.transform(lambda x: x), "ce", ds),
            TypeError,
            r"HaikuTask: loss_fn must be a function \(outputs, batch\) -> scalar loss",
        ),
        (
            lambda ds: LSTMLanguageModelTask(embedded_text_datasets(4, 8), 0),
            ValueError,
            r"LSTMLanguageModelTask: embed_size must be a positive integer, got 0",
        ),
        (
            lambda ds: TransformerLanguageModelTask(embedded_text_datasets(4, 8), 10, 3),
            ValueError,
            r"TransformerLanguageModelTask: model_size \(10\) must be divisible by num_heads",
        ),
        (
            lambda ds: NoisyMeanQuadraticTask(batch_size=0),
            ValueError,
            r"NoisyMeanQuadraticTask: batch_size must be a positive integer, got 0",
        ),
        (
            lambda ds: NoisyQuadraticFamily(cov=-0.5),
            ValueError,
            r"NoisyQuadraticFamily: cov must be a finite number >= 0.0, got -0.5",
        ),
        (
            lambda ds: SampledImageMLPFamily(seed=-1),
            ValueError,
            r"SampledImageMLPFamily: seed must be an integer >= 0, got -1",
        ),
        (
            lambda ds: digits_datasets(batch_size=0),
            ValueError,
            r"digits_datasets: batch_size must be a positive integer, got 0",
        ),
        (
            lambda ds: embedded_text_datasets(4, 0),
            ValueError,
            r"embedded_text_datasets: sequence_length must be a positive integer, got 0",
        ),
        (
            lambda ds: image_classification_datasets("mnist", 8, image_size=(8, 0)),
            ValueError,
            r"image_classification_datasets: image_size must be a positive integer, got 0",
        ),
    ],
)
def test_bad_arguments_are_named_with_the_fix(build, error, message):
    with pytest.raises(error, match=message):
        build(digits_datasets(batch_size=8))


def test_checked_arguments_are_kept_as_given():
    task = ImageMLPTask(digits_datasets(batch_size=8), [16.0, 8], act_fn="tanh", dropout_rate=0.5)
    assert task.hidden_sizes == (16, 8)
    assert task.dropout_rate == 0.5
    assert task.num_classes == 10
    params = task.init(jax.random.PRNGKey(0))
    assert params["mlp/~/linear_0"]["w"].shape == (64, 16)


def test_a_batch_norm_task_says_to_pass_its_model_state():
    task = ImageMLP_Digits8_32_BatchNorm_Relu()
    params, model_state = task.init_with_state(jax.random.PRNGKey(0))
    batch = task.datasets.sample("train", jax.random.PRNGKey(1))
    with pytest.raises(ValueError, match=r"call loss_with_state\(params, model_state, key, data\)"):
        task.loss(params, jax.random.PRNGKey(2), batch)
    loss, new_state = task.loss_with_state(params, model_state, jax.random.PRNGKey(2), batch)
    assert loss.shape == ()
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(model_state)
