"""lopt-optimizers's catalog index is current, and `lopt` starts without importing JAX."""

from lopt_core.testing import check_catalog_index


def test_catalog_index_is_current_and_lopt_starts_without_jax():
    check_catalog_index("lopt_optimizers._plugin:CATALOG")
