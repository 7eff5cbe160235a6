"""Shared test setup: quiet TensorFlow, and the repository root on sys.path (configs, benchmarks)."""

import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Eight CPU devices for the sharding tests; set before JAX initializes its backend.
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
