"""The device mesh and the one table that maps logical axis names to mesh axes."""

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from glm_jax.contract import BATCH_AXES

MESH_AXES = ("data", "fsdp", "tensor")

# Logical axis → mesh axes. Parameters and major activations name their axes in the model; nothing
# else maps names. Activations have their own names, so that a mesh axis never appears twice in
# one array's sharding (parameters' `embed` is split over fsdp, the residual stream's batch too).
RULES = (
    ("activation_batch", BATCH_AXES),
    ("activation_length", None),
    ("activation_embed", None),
    ("activation_heads", "tensor"),
    ("activation_mlp", "tensor"),
    ("activation_vocab", "tensor"),
    ("batch", BATCH_AXES),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("mlp", "tensor"),
    ("kv", None),
    ("length", None),
    ("layers", None),  # the stacked axis of scanned layers
    ("lora_rank", None),  # a LoRA adapter's rank: its A and B split as their kernel's input and output axes
)


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1, devices=None) -> Mesh:
    """A (data, fsdp, tensor) mesh over `devices` (default: all); -1 for data takes the rest."""
    devices = jax.devices() if devices is None else devices
    if data == -1:
        data = len(devices) // (fsdp * tensor)
    return Mesh(np.asarray(devices).reshape(data, fsdp, tensor), MESH_AXES)


def logical_shardings(boxed_tree, mesh: Mesh):
    """NamedShardings for a tree of (possibly logically partitioned) abstract values."""
    specs = nn.get_partition_spec(boxed_tree)
    return nn.logical_to_mesh_sharding(specs, mesh, RULES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Rows of a batch (`[B, ...]` arrays, e.g. `[B, L]`) split over (data, fsdp), the rest whole."""
    return NamedSharding(mesh, nn.logical_to_mesh_axes(("batch",), RULES))


def batch_shards(mesh: Mesh) -> int:
    """How many ways the rows of a batch are split: the devices of the mesh's batch axes."""
    return int(np.prod([mesh.shape[axis] for axis in BATCH_AXES]))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())
