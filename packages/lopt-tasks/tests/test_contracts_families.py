"""The family contract over every registered family.

Its own file, so that pytest-xdist's --dist loadfile (which keeps a file on one
worker) runs it beside the task contract of test_contracts.py, not after it.
"""

import lopt_core
from lopt_core.testing import check_task_family
from lopt_tasks import CATALOG


def test_every_registered_family_passes_check_task_family(mock_tfds):
    names = CATALOG.names("task_families")
    assert len(names) >= 7
    for name in names:
        check_task_family(lopt_core.get_task_family(name))
