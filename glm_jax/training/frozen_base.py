"""The base a run's frozen parameters come from, as its checkpoints record it, and its checks at resume.

A run that trains only some parameters (`trainable.Selection`) saves only those. Each of its
checkpoints (and best/ entries) then holds, in its `meta`, the item `base`:

    {"origin": {"workdir": "/runs/glm_large"},   # or {"seed": 0}: fresh parameters of that seed
     "digest": "3f0c9a81d2e4b7a6",               # one short hash of all the checksums below
     "checksums": {"['layers_0']['mlp']['dense_h_to_4h']['kernel']": {"hash": .., "shape": .., "dtype": ..}, ..}}

the exact checksum of every frozen array (`checksums.checksums`). Whoever reads such a checkpoint (a
resume, `workdir.load`, `--eval_only`) reads the frozen parameters from the origin again and refuses
them, in one line naming the origin and both digests, if any array differs.
"""

import hashlib
import json

import jax

from glm_jax.training import checksums, recovery


class BaseChanged(ValueError):
    """The frozen parameters read from a run's origin differ from those its checkpoints were trained on."""


def reference(origin: dict, frozen) -> dict:
    """The `base` item of a checkpoint whose frozen parameters are `frozen`, from `origin`."""
    sums = checksums.checksums({"params": frozen}).get("params", {})
    return {"origin": origin, "digest": digest(sums), "checksums": sums}


def digest(sums: dict) -> str:
    """A short hash of per-array checksums (the same arrays give the same digest)."""
    return hashlib.sha256(json.dumps(sums, sort_keys=True).encode()).hexdigest()[:16]


def describe(origin: dict) -> str:
    if "workdir" in origin:
        return f"the base workdir {origin['workdir']}"
    return f"fresh parameters of seed {origin['seed']}"


def verify(base: dict, frozen, run: str) -> None:
    """Raises `BaseChanged` if `frozen` (the arrays of the `base` item, or some of them) differ from its checksums."""
    now = checksums.checksums({"params": frozen}).get("params", {})
    then = {name: base["checksums"].get(name) for name in now}
    differ = [name for name in now if then[name] != now[name]]
    if differ:
        raise BaseChanged(
            f"{run} was trained on {describe(base['origin'])}, which has changed: {len(differ)} of {len(now)} frozen "
            f"arrays differ from their saved checksums (digest {digest(then)} saved, {digest(now)} now, e.g. "
            f"{differ[0]}); restore that base, or start a new --workdir."
        )


def latest_meta(mngr) -> dict | None:
    """The `meta` of the newest checkpoint of `mngr` whose meta reads ({} for one written before meta
    existed), or None where there is none (restoring moves damaged steps aside; nothing is moved here)."""
    for step in sorted(mngr.all_steps(), reverse=True):
        try:
            return recovery.read_meta(mngr, step) or {}
        except Exception:  # noqa: BLE001, S112 - a damaged step: the restore sets it aside
            continue
    return None


def check_resume(meta: dict | None, selection, stored_params, where: str) -> None:
    """Refuses, in one line, to resume checkpoints (`meta`: the newest one's, None if there is none) with
    another choice of trainable parameters than theirs: frozen ones where they hold all, or the reverse, or
    other trainable arrays (`stored_params`: those this run saves, abstract)."""
    if meta is None:
        return
    base = meta.get("base")
    resume = "resume with the train.trainable and lora settings they were written with, or use a new --workdir"
    if base is None and selection.freezes:
        raise ValueError(
            f"{where} holds checkpoints of all parameters, but train.trainable={selection.spec!r} freezes some: "
            f"{resume} (--init {where} starts a new run from them)."
        )
    if base is not None and not selection.freezes:
        raise ValueError(f"{where} holds checkpoints of some parameters only, on {describe(base['origin'])}: {resume}.")
    if base is not None:
        saved = {name: tuple(entry["shape"]) for name, entry in meta["checksums"].get("params", {}).items()}
        paths = jax.tree_util.tree_flatten_with_path(stored_params)[0]
        now = {jax.tree_util.keystr(path): tuple(leaf.shape) for path, leaf in paths}
        if saved != now:
            differ = sorted(set(saved.items()) ^ set(now.items()))
            raise ValueError(
                f"{where} holds checkpoints of other trainable parameters than this run's ({len(differ)} arrays "
                f"differ, e.g. {differ[0][0]}): {resume}."
            )
