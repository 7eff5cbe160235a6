"""Exact checksums of a train state's arrays, saved with each checkpoint and checked on restore.

Each checkpoint holds, in its small JSON item `meta`, an exact hash of every array of
the state, computed on device in one jitted pass. The bits of each element (bitcast to uint32) are
mixed with their position by a bijection and summed with wrapping uint32 arithmetic: the sum is
exact and independent of the reduction order and of the sharding, and any single changed element
(a flipped bit included) changes it.

"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

META_FORMAT = 1


class CorruptCheckpoint(Exception):
    """A checkpoint step that restores to other values than were saved, or not at all."""


def _fmix32(h):
    """MurmurHash3's finalizer: a bijection of uint32 that spreads every input bit."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _words(x):
    """The bits of `x` as a flat uint32 vector (one word per element up to 4 bytes, two for 8)."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        return jnp.ravel(x).astype(jnp.uint32)
    size = x.dtype.itemsize
    if size == 4:
        return jnp.ravel(jax.lax.bitcast_convert_type(x, jnp.uint32))
    if size in (1, 2):
        narrow = jnp.uint8 if size == 1 else jnp.uint16
        return jnp.ravel(jax.lax.bitcast_convert_type(x, narrow)).astype(jnp.uint32)
    return jnp.ravel(jax.lax.bitcast_convert_type(x, jnp.uint32))  # 8 bytes: a trailing axis of 2 words


def _leaf_hash(x):
    w = _words(x)
    i = jax.lax.iota(jnp.uint32, w.size)
    first = jnp.sum(_fmix32(w + _fmix32(2 * i + jnp.uint32(1))), dtype=jnp.uint32)
    second = jnp.sum(_fmix32(w ^ _fmix32(2 * i + jnp.uint32(0x9E3779B9))), dtype=jnp.uint32)
    return jnp.stack([first, second])


@functools.lru_cache(maxsize=8)
def _hasher(out_sharding):
    return jax.jit(lambda leaves: jnp.stack([_leaf_hash(x) for x in leaves]), out_shardings=out_sharding)


def _replicated(leaves):
    for x in leaves:
        s = getattr(x, "sharding", None)
        if isinstance(s, jax.sharding.NamedSharding):
            return jax.sharding.NamedSharding(s.mesh, jax.sharding.PartitionSpec())
    return None


def parts(state) -> dict:
    """The top-level parts of a state (fields of a TrainState, keys of a dict)."""
    if isinstance(state, dict):
        return dict(state)
    if dataclasses.is_dataclass(state):
        return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
    return {"state": state}


def checksums(state) -> dict:
    """{part: {leaf path: {"hash", "shape", "dtype"}}} of every array of `state`, in one device pass."""
    named = []
    for part, tree in parts(state).items():
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            named.append((part, jax.tree_util.keystr(path), leaf))
    if not named:
        return {}
    leaves = [jnp.asarray(leaf) for _, _, leaf in named]
    hashes = np.asarray(jax.device_get(_hasher(_replicated(leaves))(leaves)))
    out: dict = {}
    for (part, name, _), leaf, (a, b) in zip(named, leaves, hashes, strict=True):
        entry = {"hash": f"{int(a):08x}{int(b):08x}", "shape": list(leaf.shape), "dtype": str(leaf.dtype)}
        out.setdefault(part, {})[name] = entry
    return out


def meta(state) -> dict:
    """The JSON item saved with each checkpoint: which parts the state holds, and their checksums."""
    return {"format": META_FORMAT, "parts": list(parts(state)), "checksums": checksums(state)}


def verify(saved: dict | None, restored) -> None:
    """Raises CorruptCheckpoint naming the first arrays of `restored` (a state or some of its parts)
    whose checksums differ from `saved` (the checkpoint's `meta`); nothing to check without one."""
    if not saved:
        return
    now = checksums(restored)
    bad = []
    for part, leaves in now.items():
        expected = saved["checksums"].get(part, {})
        bad += [f"{part}{name}" for name, entry in leaves.items() if expected.get(name) != entry]
    if bad:
        total = sum(len(leaves) for leaves in now.values())
        shown = ", ".join(bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")
        raise CorruptCheckpoint(f"checksums differ from the saved ones for {len(bad)} of {total} arrays: {shown}")
