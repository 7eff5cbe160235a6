"""What the attention-kernel paths (splash, gpu_flash) share: `shard_map` (rows over the mesh's batch
axes, heads over "tensor"), and the check of the private library API each relies on.

A kernel sees one device's rows and heads whole (attention mixes neither rows nor heads), so the
splash and GPU paths run their kernel per device on the local block, with no communication.
"""

import jax
from jax.sharding import PartitionSpec

from glm_jax.contract import BATCH_AXES

HEADS_AXIS = "tensor"  # mesh axis of the heads


def over_batch_and_heads(local, mesh):
    """`local(q, k, v, *rows)` run under `shard_map` over `mesh` (a `Mesh` or `AbstractMesh`).

    q, k, v are `[B, L, heads, head_dim]`, split by rows over the mesh's ("data", "fsdp") axes and by
    heads over "tensor" (those present); each of `rows` is `[B, L]`, split by rows. B and heads must
    divide by those axes' sizes. Returns a function of the same arguments, output split as q.
    """
    names = tuple(mesh.axis_names)
    batch = tuple(a for a in BATCH_AXES if a in names) or None
    heads = HEADS_AXIS if HEADS_AXIS in names else None
    qkv_spec = PartitionSpec(batch, None, heads, None)
    row_spec = PartitionSpec(batch, None)

    def sharded(q, k, v, *rows):
        run = jax.shard_map(
            local,
            mesh=mesh,
            in_specs=(qkv_spec,) * 3 + (row_spec,) * len(rows),
            out_specs=qkv_spec,
            check_vma=False,  # Pallas and custom-call outputs carry no varying-mesh-axes types
        )
        return run(q, k, v, *rows)

    return sharded


def require_private_api(module: str, library: str, problems: list[str]) -> None:
    """Raises if `problems` (a kernel module's `private_api_problems()`) is not empty: `library` changed
    the private API that `glm_jax/model/{module}.py` relies on."""
    if problems:
        raise RuntimeError(
            f"glm_jax.model.{module}: the installed {library} changed its private API: "
            + "; ".join(problems)
            + f". Update glm_jax/model/{module}.py, or use model.attention='xla'."
        )
