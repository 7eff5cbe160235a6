"""Multi-process start-up: one process per host (TPU pods) or per node/GPU (clusters).

On a Cloud TPU pod slice, and under SLURM with several tasks, `jax.distributed.initialize()` finds
the coordinator, process count and id by itself. GKE sets variables that show a pod; on TPU VMs
the layout is in the VM's metadata, so the launch scripts set `GLM_DISTRIBUTED_AUTO=1` to ask for
that same automatic start. Elsewhere (GPU or CPU clusters, localhost tests)
give them explicitly, in the config or the environment:

    --config.distributed.coordinator_address=host0:1234 --config.distributed.num_processes=2 \\
    --config.distributed.process_id=0          (or GLM_COORDINATOR_ADDRESS, GLM_NUM_PROCESSES, GLM_PROCESS_ID)
"""

import os

import jax

_TPU_POD_VARIABLES = ("TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS")


def _explicit(c) -> dict:
    address = c.coordinator_address or os.environ.get("GLM_COORDINATOR_ADDRESS", "")
    num = c.num_processes or int(os.environ.get("GLM_NUM_PROCESSES", "0"))
    pid = c.process_id if c.process_id >= 0 else int(os.environ.get("GLM_PROCESS_ID", "-1"))
    if not address:
        return {}
    if num < 1 or not 0 <= pid < num:
        raise ValueError(
            f"distributed.coordinator_address={address!r} needs distributed.num_processes >= 1 and "
            f"0 <= distributed.process_id < num_processes (got {num} and {pid})."
        )
    return {"coordinator_address": address, "num_processes": num, "process_id": pid}


def _cluster_detected() -> bool:
    on_tpu_pod = any(os.environ.get(v) and "," in os.environ.get(v, ",") for v in _TPU_POD_VARIABLES)
    on_slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1
    return on_tpu_pod or on_slurm or os.environ.get("GLM_DISTRIBUTED_AUTO") == "1"


def initialize(c) -> None:
    """Starts `jax.distributed` when this is one process of several; a no-op for a single process.

    `c` is the config's `distributed` section. Must run before anything touches JAX devices.
    """
    explicit = _explicit(c)
    if explicit:
        if c.cpu_collectives:
            jax.config.update("jax_cpu_collectives_implementation", c.cpu_collectives)
        jax.distributed.initialize(**explicit)
    elif _cluster_detected():
        jax.distributed.initialize()
