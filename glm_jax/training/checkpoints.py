"""Orbax checkpoints of the train state and the data-stream position, with exact resume."""

import json
import weakref
from typing import NamedTuple

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from glm_jax import console
from glm_jax.training import checksums, frozen_base, optim, recovery, trainable
from glm_jax.training.recovery import CheckpointSaveError  # noqa: F401 - what a failed save raises

# Config keys that fix parameter shapes or the data stream: a resumed run must match them.
_MUST_MATCH = (
    "model", "lora", "data.task", "data.seq_len", "data.batch_size", "data.pack", "data.host_split", "train.seed"
)  # fmt: skip


def manager(workdir: str, c: ml_collections.ConfigDict) -> ocp.CheckpointManager:
    """Asynchronous saves that keep the last `train.keep_checkpoints`; the caller decides when.

    Each checkpoint also holds `meta` (`checksums.meta`: its parts and their checksums). Close it
    with `finish` (which raises a failed save's `CheckpointSaveError`) or `close_quietly`.
    """
    recovery.quiet_orbax_io_tracebacks()
    options = ocp.CheckpointManagerOptions(max_to_keep=c.train.keep_checkpoints, enable_async_checkpointing=True)
    items = ("state", "data", "input", "meta")
    return ocp.CheckpointManager(epath.Path(workdir) / "checkpoints", options=options, item_names=items)


def save(mngr: ocp.CheckpointManager, step: int, state, data_position: int, *, items=None, base=None) -> None:
    """Starts saving `state`, the number of batches drawn so far and `items` (more Orbax items by name,
    e.g. the input stream's iterator state: `pipeline.BatchStream.save_items`); returns while the
    arrays are written.

    `state` is a TrainState, or a dict of its parts (`workdir.write` saves {"step", "params"}:
    `restore_latest` then starts a fresh optimizer state). With frozen parameters, `state` holds the
    trainable ones and `base` the reference of the rest (`frozen_base`), kept in `meta`. Raises
    `CheckpointSaveError` if this save cannot start or the previous one failed in the background.
    """
    finish(mngr)
    args = dict(state=ocp.args.StandardSave(state), data=ocp.args.JsonSave({"batches": data_position}))
    args.update(items or {})
    args["meta"] = ocp.args.JsonSave(_meta(state, base))
    args = ocp.args.Composite(**args)
    try:
        mngr.save(step, args=args, force=True)
    except Exception as error:
        raise recovery.save_error(mngr, step, error) from error
    _pending[mngr] = step


def _meta(state, base: dict | None) -> dict:
    """A checkpoint's `meta`: its parts and their checksums, and the frozen parameters' `base` if any."""
    return checksums.meta(state) | ({"base": base} if base else {})


# The step each manager is writing in the background, to name it if that write fails.
_pending: "weakref.WeakKeyDictionary[ocp.CheckpointManager, int]" = weakref.WeakKeyDictionary()


def finish(mngr: ocp.CheckpointManager) -> None:
    """Waits for the save in progress; raises `CheckpointSaveError` if it failed (a full disk...).

    Orbax reports a background write's failure only here (or on the next save): call it before
    exiting, then `close_quietly`.
    """
    step = _pending.pop(mngr, None)
    try:
        mngr.wait_until_finished()
        mngr.check_for_errors()
    except Exception as error:
        raise recovery.save_error(mngr, step, error) from error
    if step is not None and not (epath.Path(mngr.directory) / str(step)).exists():
        raise recovery.save_error(mngr, step, RuntimeError("Orbax did not commit the checkpoint"))


def close_quietly(mngr: ocp.CheckpointManager) -> None:
    """Closes `mngr` whatever happened before (its background threads are joined, so the process
    exits without tracebacks); a save still failing here is logged, not raised: call `finish` first
    to get it as an error."""
    _pending.pop(mngr, None)
    try:
        mngr.close()
    except Exception as error:  # noqa: BLE001 - Orbax raises a failed save once, then closes
        logging.warning("A checkpoint save in %s failed: %s", mngr.directory, recovery.short_reason(error))
        mngr.close()


class Restored(NamedTuple):
    state: object  # the train state
    position: int  # batches drawn before it was saved
    items: dict  # the `extra` items as restored


def restore_latest(mngr: ocp.CheckpointManager, abstract_state, *, extra=None, init_opt_state=None):
    """The latest good checkpoint (`Restored`: state, data position, extra items), or None if there is none.

    A damaged step (unreadable, or its arrays differ from their saved checksums) is moved aside to
    `<workdir>/checkpoints_corrupt/` with a warning and the next newest is restored; a ValueError
    names the moved steps if none is left. A checkpoint of parameters alone (`workdir.write`) gets
    the fresh optimizer state `init_opt_state(params)` (e.g. from `Trainer.state_from_params`).

    `extra(step_directory)` gives more items to restore by name (e.g. an input stream's iterator,
    `pipeline.BatchStream.restore_items`, restored in place); their results come back in `items`.
    """

    def attempt(step):
        saved = recovery.read_meta(mngr, step)
        params_only = saved is not None and "opt_state" not in saved["parts"]
        target = {"step": abstract_state.step, "params": abstract_state.params} if params_only else abstract_state
        items = dict(state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore())
        if extra is not None:
            items.update(extra(epath.Path(mngr.directory) / str(step)))
        restored = mngr.restore(step, args=ocp.args.Composite(**items))
        checksums.verify(saved, restored.state)
        return restored, params_only

    found = recovery.restore_newest_good(mngr, attempt)
    if found is None:
        return None
    restored, params_only = found
    state = restored.state
    if params_only:  # e.g. a converted model (`workdir.write`): a fresh optimizer state
        if init_opt_state is None:
            raise ValueError(f"{mngr.directory} holds parameters alone; restoring it needs init_opt_state.")
        opt_state = init_opt_state(state["params"])
        state = abstract_state.replace(step=state["step"], params=state["params"], opt_state=opt_state)
    items = {k: restored[k] for k in restored.keys() if k not in ("state", "data", "meta")}
    return Restored(state, restored.data["batches"], items)


def restore_params(directory: str, abstract_params, base=None):
    """The parameters alone of the latest good checkpoint under `directory`, an Orbax checkpoint
    directory of train states (optimizer state is not read: Orbax partial restore). Damaged steps
    are moved aside and the next newest is used (`recovery.restore_newest_good`).

    A checkpoint of a run with frozen parameters holds its trainable ones: `base(reference, abstract)`
    gives the rest (`reference`: the checkpoint's `base` item), checked against its checksums
    (`frozen_base.verify`). Returns (params, step); fails with a clear message if there is no checkpoint.
    """
    with ocp.CheckpointManager(epath.Path(directory), item_names=("state", "meta")) as mngr:

        def attempt(step):
            saved = recovery.read_meta(mngr, step)
            target = {"params": _saved_part(abstract_params, saved)}
            restore_args = ocp.checkpoint_utils.construct_restore_args(target)
            args = ocp.args.PyTreeRestore(item=target, restore_args=restore_args, partial_restore=True)
            params = mngr.restore(step, args=ocp.args.Composite(state=args)).state["params"]
            checksums.verify(saved, {"params": params})
            return params, step, saved

        found = recovery.restore_newest_good(mngr, attempt)
    if found is None:
        raise ValueError(f"{directory} holds no checkpoint; train first (python -m glm_jax.train).")
    params, step, saved = found
    return _with_base(params, abstract_params, saved, base, str(epath.Path(directory).parent)), step


def _saved_part(abstract_params, saved: dict | None):
    """The arrays of `abstract_params` that a checkpoint holds (by the checksums of its `meta`, if it has one)."""
    if saved is None:
        return abstract_params
    names = saved["checksums"].get("params", {})
    leaves = jax.tree_util.tree_flatten_with_path(abstract_params)[0]
    paths = [path for path, _ in leaves if jax.tree_util.keystr(path) in names]
    return trainable.subtree(abstract_params, [tuple(key.key for key in path) for path in paths])


def _with_base(params, abstract_params, saved: dict | None, base, run: str):
    """`params` restored from a checkpoint of workdir `run` (`saved`: its meta) with the rest of `abstract_params`:
    the frozen ones from `base`, checked against the checkpoint's `base` item (a ValueError if it has none)."""
    have = trainable.flat(params)
    missing = [path for path in trainable.flat(abstract_params) if path not in have]
    if not missing:
        return params
    reference = (saved or {}).get("base")
    if reference is None or base is None:
        what = "parameters" if reference is None else "frozen parameters, whose base this reader cannot read"
        name = trainable.path_name(missing[0])
        raise ValueError(f"{run}'s checkpoints hold no {name} ({len(missing)} {what} asked for are missing).")
    frozen = base(reference, trainable.subtree(abstract_params, missing))
    frozen_base.verify(reference, frozen, run)
    return trainable.nest({**trainable.flat(frozen), **have})


BEST_KEPT = 2  # the best evaluations kept in best/: a damaged one falls back to the next


def best_manager(workdir: str, metric: str) -> ocp.CheckpointManager:
    """Parameters of the `BEST_KEPT` best evaluations so far by `metric` (higher is better) in
    `workdir/best`, each with its scores and the checksums of its arrays (`meta`)."""
    options = ocp.CheckpointManagerOptions(max_to_keep=BEST_KEPT, best_fn=lambda m: m[metric], best_mode="max")
    return ocp.CheckpointManager(epath.Path(workdir) / "best", options=options, item_names=("params", "scores", "meta"))


def save_if_best(mngr: ocp.CheckpointManager, step: int, params, scores: dict, base=None) -> None:
    """Keeps `params` if `scores` are among the best kept (Orbax drops the others). A step already
    kept (its evaluation repeated after a resume, with the same result) is left as it is. With frozen
    parameters, `params` are the trainable ones and `base` the reference of the rest (as `save`)."""
    if step in mngr.all_steps():
        return
    args = ocp.args.Composite(
        params=ocp.args.StandardSave(params),
        scores=ocp.args.JsonSave(scores),
        meta=ocp.args.JsonSave(_meta({"params": params}, base)),
    )
    mngr.save(step, args=args, metrics=scores, force=True)


def _saved_score(directory: epath.Path, step: int, metric: str) -> float:
    """The `metric` a best/ step was kept for; -inf where its scores cannot be read (tried last)."""
    try:
        return float(json.loads((directory / str(step) / "scores" / "metadata").read_text())[metric])
    except (OSError, ValueError, KeyError, TypeError):
        return float("-inf")


def restore_best(mngr: ocp.CheckpointManager, abstract_params, metric: str, base=None):
    """(params, step, scores) of the best good checkpoint of best/ by `metric`, or None if there is none.
    A damaged one (unreadable, or arrays that differ from their checksums) is moved aside to
    `best_corrupt/` with a warning and the next best is restored (`recovery.restore_newest_good`).
    The frozen parameters of a run that has some come from `base`, as in `restore_params`."""
    directory = epath.Path(mngr.directory)

    def attempt(step):
        saved = recovery.read_meta(mngr, step)
        stored = _saved_part(abstract_params, saved)
        args = ocp.args.Composite(params=ocp.args.StandardRestore(stored), scores=ocp.args.JsonRestore())
        restored = mngr.restore(step, args=args)
        checksums.verify(saved, {"params": restored.params})
        return restored.params, step, restored.scores, saved

    def best_first(steps):
        return sorted(steps, key=lambda s: (-_saved_score(directory, s, metric), -s))

    found = recovery.restore_newest_good(mngr, attempt, needed=("params", "scores"), order=best_first)
    if found is None:
        return None
    params, step, scores, saved = found
    return _with_base(params, abstract_params, saved, base, str(directory.parent)), step, scores


def _differs(saved, new) -> bool:
    """Whether a saved config value differs from the new one; keys the saved config lacks (added to
    glm_jax since it was written, e.g. model.causal) are not compared, at any depth."""
    if saved is None:
        return False
    if isinstance(saved, dict) and isinstance(new, dict):
        return any(_differs(value, new.get(key)) for key, value in saved.items() if key in new)
    return saved != new


def _get(c: ml_collections.ConfigDict, dotted: str):
    """The value at `dotted`, or None where a config has no such key (one saved before it existed)."""
    for key in dotted.split("."):
        if key not in c:
            return None
        c = c[key]
    return c.to_dict() if isinstance(c, ml_collections.ConfigDict) else c


def latest_step(workdir: str) -> int | None:
    """The newest committed step in `workdir/checkpoints` (None if none)."""
    directory = epath.Path(workdir) / "checkpoints"
    steps = [int(p.name) for p in directory.iterdir() if p.name.isdigit()] if directory.is_dir() else []
    return max(steps, default=None)


def has_checkpoints(workdir: str) -> bool:
    """Whether `workdir/checkpoints` holds a committed step (Orbax's partial `N.orbax-checkpoint-tmp`
    directories and steps moved aside to `checkpoints_corrupt` do not count)."""
    return latest_step(workdir) is not None


def _check_folders(workdir: str) -> None:
    """The workdir's folders must not be files (Orbax would time out writing into one)."""
    for name in ("checkpoints", "best", "checkpoints_corrupt"):
        path = epath.Path(workdir) / name
        if path.exists() and not path.is_dir():
            raise ValueError(f"{path} is a file, not a directory: move it away, or use another --workdir.")


def _check_schedule(workdir: str, saved: ml_collections.ConfigDict, c: ml_collections.ConfigDict) -> None:
    """A resumed run whose learning-rate schedule would change at its step (`train.steps` changed while
    `optimizer.decay_steps` follows it) must choose how to go on: a ValueError naming both choices."""
    step, saved = latest_step(workdir), saved.to_dict()
    saved_steps = saved.get("train", {}).get("steps", c.train.steps)
    if step is None or saved_steps == c.train.steps:
        return
    saved_optimizer = ml_collections.ConfigDict({**c.optimizer.to_dict(), **saved.get("optimizer", {})})
    old = optim.learning_rate_schedule(saved_optimizer, saved_steps)
    new = optim.learning_rate_schedule(c.optimizer, c.train.steps)
    if abs(float(old(step)) - float(new(step))) <= 1e-12:
        return
    planned = saved_optimizer.decay_steps or saved_steps
    raise ValueError(
        f"{workdir} is at step {step} of a learning-rate schedule over {planned} steps; train.steps={c.train.steps} "
        f"would re-plan it over {c.optimizer.decay_steps or c.train.steps} (the rate at step {step} jumps from "
        f"{float(old(step)):.3g} to {float(new(step)):.3g}). Choose: --config.optimizer.decay_steps={planned} keeps "
        f"the old schedule (steps past {planned} at its final rate), or --config.optimizer.decay_steps="
        f"{c.train.steps} re-plans it over {c.train.steps} steps (docs/reliability.md)."
    )


def check_or_write_config(workdir: str, c: ml_collections.ConfigDict) -> None:
    """Writes `config.json`; a workdir holding checkpoints requires the keys that must match.

    Fails before any work with the differing keys, so a resumed run never silently changes the
    model or the data stream of the checkpoints already written, nor (`_check_schedule`) the
    learning rate at its step. A workdir is committed to its config by its first checkpoint only:
    before one exists (e.g. the first start failed), a different config replaces the saved one,
    with a console line saying so.
    """
    _check_folders(workdir)
    path = epath.Path(workdir) / "config.json"
    if path.exists():
        saved = ml_collections.ConfigDict(json.loads(path.read_text()))
        diffs = [k for k in _MUST_MATCH if _differs(_get(saved, k), _get(c, k))]
        shown = ", ".join(f"{k}: {_get(saved, k)} → {_get(c, k)}" for k in diffs)
        if diffs and not has_checkpoints(workdir):
            console.say(f"{workdir}/config.json differs ({shown}) but no checkpoint was written with it; replacing it.")
        elif diffs:
            raise ValueError(
                f"{workdir} holds a run with a different config ({shown}). Use the same values to resume, "
                "or a new --workdir."
            )
        _check_schedule(workdir, saved, c)
    if jax.process_index() == 0:  # written whole, then renamed: other processes never read half a file
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.parent / "config.json.tmp"
        partial.write_text(c.to_json(indent=2))
        partial.replace(path)
