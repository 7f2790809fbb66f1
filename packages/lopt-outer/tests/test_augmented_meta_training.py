"""Task augmentations of lopt-tasks inside lopt-outer's vmapped truncated step and estimators."""

from lopt_core.testing import check_gradient_estimator
from lopt_learned import LearnableSGD
from lopt_outer import ConstantTruncationSchedule, TruncatedPES, VectorizedLOptTruncatedStep
from lopt_tasks import augmentation as aug
from lopt_tasks.quadratics import FixedDimQuadraticFamily


def test_delayed_gradients_meta_train_under_pes():
    # The params history in the model state, and a traced delay, through the vmapped step.
    family = aug.AsyncDelayedGradientsFamily(FixedDimQuadraticFamily(4), 3)
    step = VectorizedLOptTruncatedStep(family, LearnableSGD(), ConstantTruncationSchedule(4), 2)
    check_gradient_estimator(TruncatedPES(step, 2))
