"""Shared test setup: quiet TensorFlow, one XLA compilation cache for the run, and the repository root on
sys.path (configs, benchmarks)."""

import atexit
import os
import pathlib
import shutil
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The suite runs on CPU devices, also where libtpu is installed for the TPU compile test (it must
# not hold libtpu's process lock, which that test's subprocess needs).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Eight CPU devices for the sharding tests; set before JAX initializes its backend.
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
# Many tests compile the same programs (a tiny model's train and eval steps), in this process and in the
# commands they run: every process of the run (pytest-xdist's workers and their subprocesses inherit the
# environment) shares one persistent compilation cache, made fresh for the run and removed after it.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="glm_jax_tests_xla_")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
