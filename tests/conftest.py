"""Shared test setup: quiet TensorFlow, and the repository root on sys.path (configs, benchmarks)."""

import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The suite runs on CPU devices, also where libtpu is installed for the TPU compile test (it must
# not hold libtpu's process lock, which that test's subprocess needs).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Eight CPU devices for the sharding tests; set before JAX initializes its backend.
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
