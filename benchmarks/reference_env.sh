#!/usr/bin/env bash
# Builds a reference environment for `run.py --reference-python`: Google's
# learned_optimization on its pinned stack (jax 0.4.30), in a scratch venv outside
# this repository.
#
#   bash benchmarks/reference_env.sh SRC_DIR VENV_DIR
#
# SRC_DIR is a checkout of the reference's source tree (the directory holding its
# setup.py and the learned_optimization package); VENV_DIR is created. Needs uv and
# access to a package index. Then:
#
#   python benchmarks/run.py W1 W2 --reference-python VENV_DIR/bin/python
set -euo pipefail
if [ "$#" -ne 2 ]; then
  echo "usage: bash benchmarks/reference_env.sh SRC_DIR VENV_DIR" >&2
  exit 2
fi
src=$1
venv=$2
if [ ! -f "$src/learned_optimization/__init__.py" ]; then
  echo "error: $src does not hold the reference's source (no learned_optimization/__init__.py);" \
    "pass the directory with its setup.py" >&2
  exit 2
fi
if [ -e "$venv" ]; then
  echo "error: $venv exists; pass a new directory (or remove it)" >&2
  exit 2
fi
uv venv -q -p 3.11 "$venv"
# The reference's pins: jax/jaxlib 0.4.30 with the flax, haiku, optax and chex of its
# time; numpy<2 for that jaxlib; tensorflow-cpu because its tasks import
# tensorflow_datasets, which imports TensorFlow there.
uv pip install -q -p "$venv/bin/python" \
  "jax==0.4.30" "jaxlib==0.4.30" "numpy<2" "flax==0.8.5" "dm-haiku==0.0.12" \
  "optax==0.2.3" "chex==0.1.86" gin-config absl-py tqdm ml_dtypes \
  tensorflow-cpu tensorflow-datasets
# --no-deps: its setup.py pins packages that no longer install on Python 3.11
# (absl-py 0.12, dm-haiku 0.0.5, dm-launchpad-nightly); the stack above replaces them.
uv pip install -q -p "$venv/bin/python" --no-deps -e "$src"
"$venv/bin/python" -c "import jax, learned_optimization; print('reference env ready: jax', jax.__version__)"
