"""Two processes on localhost (4 CPU devices each) train exactly like one process with 8 devices."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
from conftest import ROOT

FLAGS = [
    "--config.model.num_layers=2",
    "--config.model.hidden=32",
    "--config.model.heads=2",
    "--config.data.seq_len=64",
    "--config.data.batch_size=8",
    "--config.data.host_split=slice",  # the same global stream for any number of processes
    "--config.data.eval_batches=2",
    "--config.data.unigram_batches=2",
    "--config.optimizer.decay_steps=6",
    "--config.train.log_every=1",
    "--config.train.eval_every=100",
    "--config.train.checkpoint_every=5",
]


def _command(workdir, steps, *extra):
    config = str(ROOT / "configs/glm_tiny.py")
    return [sys.executable, "-m", "glm_jax.train", "--config", config, f"--workdir={workdir}",
            f"--config.train.steps={steps}", *FLAGS, *extra]  # fmt: skip


def _env(devices):
    flags = f"--xla_force_host_platform_device_count={devices}"
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "XLA_FLAGS": flags, "PYTHONPATH": str(ROOT)}


def _losses(workdir):
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if "loss" in r}


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_and_their_checkpoint_restores_in_one(tmp_path):
    single, multi = tmp_path / "single", tmp_path / "multi"
    result = subprocess.run(_command(single, 6), env=_env(8), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    coordinator = f"--config.distributed.coordinator_address=localhost:{_free_port()}"
    processes = [
        subprocess.Popen(
            _command(
                multi, 5, coordinator, "--config.distributed.num_processes=2", f"--config.distributed.process_id={i}"
            ),
            env=_env(4),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in processes]
    for p, (_out, err) in zip(processes, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert "GLM 2L" in outputs[0][0] and "GLM 2L" not in outputs[1][0]  # only process 0 prints

    one, two = _losses(single), _losses(multi)
    assert sorted(one) == [1, 2, 3, 4, 5, 6] and sorted(two) == [1, 2, 3, 4, 5]
    np.testing.assert_allclose([two[s] for s in two], [one[s] for s in two], rtol=1e-5)

    resumed = subprocess.run(_command(multi, 6), env=_env(8), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step 5 (data position 5 batches)" in resumed.stdout
    np.testing.assert_allclose(_losses(multi)[6], one[6], rtol=1e-5)  # restored state, same stream


def test_a_signal_to_one_host_stops_both_at_the_same_step_with_one_checkpoint(tmp_path):
    """JAX's preemption sync (via Orbax's reached_preemption): host 1 gets SIGTERM, both stop."""
    workdir = tmp_path / "multi"
    coordinator = f"--config.distributed.coordinator_address=localhost:{_free_port()}"
    endless = ["--config.train.checkpoint_every=100000", coordinator, "--config.distributed.num_processes=2"]
    processes = [
        subprocess.Popen(_command(workdir, 100_000, *endless, f"--config.distributed.process_id={i}"),
                         env=_env(4), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]  # fmt: skip
    start = time.monotonic()
    while not (workdir / "metrics.jsonl").exists() or len((workdir / "metrics.jsonl").read_text().splitlines()) < 3:
        assert all(p.poll() is None for p in processes) and time.monotonic() - start < 300
        time.sleep(0.05)
    processes[1].send_signal(signal.SIGTERM)
    errors = [p.communicate(timeout=300)[1] for p in processes]
    assert [p.returncode for p in processes] == [75, 75], errors[0][-3000:] + errors[1][-3000:]
    steps = [p.name for p in (workdir / "checkpoints").iterdir()]
    assert len(steps) == 1 and steps[0].isdigit()
    for error in errors:
        assert f"SIGTERM: stopped after step {steps[0]}, whose checkpoint is committed" in error
    saved = sorted(p.name for p in (workdir / "checkpoints" / steps[0] / "input").glob("*.index"))
    assert saved == ["process_0_of_2.index", "process_1_of_2.index"]


def test_cluster_detection(monkeypatch):
    from glm_jax.training import distributed

    for name in ("TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS", "SLURM_NTASKS", "GLM_DISTRIBUTED_AUTO"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed._cluster_detected()
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "w0")  # a single-host slice
    assert not distributed._cluster_detected()
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "w0,w1")
    assert distributed._cluster_detected()
    monkeypatch.delenv("TPU_WORKER_HOSTNAMES")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert distributed._cluster_detected()
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("GLM_DISTRIBUTED_AUTO", "1")  # TPU VMs (set by launch/tpu_vm.sh)
    assert distributed._cluster_detected()
