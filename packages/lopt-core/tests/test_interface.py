"""Abstract interfaces fail at instantiation, naming the methods a subclass must write."""

import pytest

import lopt_core
from lopt_core import validation


@pytest.mark.parametrize(
    ("base", "message"),
    [
        (lopt_core.Optimizer, r"must override init\(\); it must override update\(\)"),
        (lopt_core.LearnedOptimizer, r"must override init\(\); it must override opt_fn\(\)"),
        (lopt_core.TaskFamily, r"must override sample\(\); it must override task_fn\(\)"),
        (lopt_core.TruncationSchedule, r"must override init\(\); it must override next_state"),
        (
            lopt_core.GradientEstimator,
            r"must override compute_gradient_estimate\(\); it must override init_worker_state",
        ),
        (
            lopt_core.TruncatedStep,
            r"must override init_step_state\(\); it must override meta_loss_batch\(\); .*outer_init.*unroll_step",
        ),
        (
            lopt_core.Task,
            r"must override init\(\) or init_with_state\(\); it must override loss\(\) or loss_with",
        ),
    ],
)
def test_a_subclass_missing_a_method_fails_at_instantiation(base, message):
    class Incomplete(base):
        pass

    with pytest.raises(TypeError, match=r"Incomplete cannot be instantiated: it " + message):
        Incomplete()


def test_subclasses_that_never_call_super_init_work():
    class Opt(lopt_core.Optimizer):
        def __init__(self, lr):
            self.lr = lr  # no super().__init__(), as in the reference notebooks

        def init(self, params, model_state=None, num_steps=None, key=None):
            return {"params": params}

        def update(self, opt_state, grads, loss=None, model_state=None, key=None):
            return opt_state

    opt = Opt(0.1)
    assert opt.lr == 0.1
    assert opt.needs_loss is False
    assert validation.needs_loss(opt) is False


def test_declared_members_have_defaults():
    assert lopt_core.TruncatedStep.num_tasks == 1
    assert lopt_core.TruncatedStep.keyed is False
    assert lopt_core.TruncatedStep.datasets is None
    assert lopt_core.TruncationSchedule.max_length is None
    assert lopt_core.GradientEstimator.truncated_step is None


def test_an_estimator_without_a_truncated_step_falls_back_to_its_class_name():
    class Bare(lopt_core.GradientEstimator):
        def init_worker_state(self, worker_weights, key):
            return None

        def compute_gradient_estimate(self, worker_weights, key, state, with_summary=False):
            raise AssertionError("not called")

    assert Bare().task_name() == "Bare"
    assert Bare().cfg_name() == "Bare"
    assert Bare().warm_up(None, None) is False


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: validation.check_positive(0.0, "X", "lr"),
            ValueError,
            "X: lr must be a finite number > 0.0, got 0.0",
        ),
        (
            lambda: validation.check_nonnegative(float("nan"), "X", "wd"),
            ValueError,
            "X: wd must be a finite number >= 0.0, got nan",
        ),
        (
            lambda: validation.check_unit_interval(1.0, "X", "b1"),
            ValueError,
            r"X: b1 must be a finite number >= 0.0 and < 1.0, got 1.0",
        ),
        (
            lambda: validation.check_positive_int(2.5, "X", "n"),
            ValueError,
            "X: n must be a positive integer, got 2.5",
        ),
        (
            lambda: validation.check_positive_int(True, "X", "n"),
            ValueError,
            "X: n must be a positive integer, got True",
        ),
        (
            lambda: validation.check_positive_int(-1, "X", "n", minimum=0),
            ValueError,
            "X: n must be an integer >= 0, got -1",
        ),
        (
            lambda: validation.check_learning_rate(-1e-3, "X"),
            ValueError,
            r"X: learning_rate must be a finite number >= 0 \(or an optax schedule\), got -0.001",
        ),
        (lambda: validation.check_number("a", "X", "v"), TypeError, "X: v must be a scalar number"),
        (
            lambda: validation.check_choice("z", "X", "mode", ("a", "b")),
            ValueError,
            "X: mode must be one of 'a', 'b', got 'z'",
        ),
        (
            lambda: validation.check_tree_match({"a": 1.0}, {"b": 1.0}, "X"),
            ValueError,
            r"X: the gradients do not match the parameters: .*opt.get_params",
        ),
    ],
)
def test_validation_errors_name_the_owner_the_argument_and_the_value(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_validation_passes_good_values_through_unchanged():
    assert validation.check_positive_int(3.0, "X", "n") == 3
    assert validation.check_unit_interval(0.0, "X", "b") == 0.0
    sched = lambda step: 0.1  # noqa: E731
    assert validation.check_learning_rate(sched, "X") is sched


def test_check_loss_given_names_the_optimizer_and_the_fix():
    class NeedsLoss:
        needs_loss = True
        name = "Hungry"

    with pytest.raises(
        ValueError, match=r"Hungry needs the loss at every step \(needs_loss=True\)"
    ):
        validation.check_loss_given(NeedsLoss(), None)
    validation.check_loss_given(NeedsLoss(), 1.0)
