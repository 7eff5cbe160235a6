"""Orbax checkpoints of the train state and the data-stream position, with exact resume."""

import json
import weakref

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from glm_jax import cli
from glm_jax.training import input_state, recovery
from glm_jax.training.recovery import CheckpointSaveError  # noqa: F401 - what a failed save raises

# Config keys that fix parameter shapes or the data stream: a resumed run must match them.
_MUST_MATCH = ("model", "data.task", "data.seq_len", "data.batch_size", "data.pack", "data.host_split", "train.seed")


def manager(workdir: str, c: ml_collections.ConfigDict) -> ocp.CheckpointManager:
    """Asynchronous saves that keep the last `train.keep_checkpoints`; the caller decides when.

    Each checkpoint also holds `meta` (`recovery.meta`: its parts and their checksums). Close it
    with `finish` (which raises a failed save's `CheckpointSaveError`) or `close_quietly`.
    """
    recovery.quiet_orbax_io_tracebacks()
    options = ocp.CheckpointManagerOptions(max_to_keep=c.train.keep_checkpoints, enable_async_checkpointing=True)
    items = ("state", "data", "input", "meta")
    return ocp.CheckpointManager(epath.Path(workdir) / "checkpoints", options=options, item_names=items)


def save(mngr: ocp.CheckpointManager, step: int, state, data_position: int, *, stream=None) -> None:
    """Starts saving `state`, the number of batches drawn so far and, given the `stream` they came
    from (`pipeline.BatchStream`), its iterator state; returns while the arrays are written.

    `state` is a TrainState, or a dict of its parts (`workdir.write` saves {"step", "params"}:
    `restore_latest` then starts a fresh optimizer state). Raises `CheckpointSaveError` if this
    save cannot start or the previous one failed in the background.
    """
    finish(mngr)
    items = dict(state=ocp.args.StandardSave(state), data=ocp.args.JsonSave({"batches": data_position}))
    if stream is not None:
        items["input"] = input_state.InputSave(stream)
    items["meta"] = ocp.args.JsonSave(recovery.meta(state))
    args = ocp.args.Composite(**items)
    try:
        mngr.save(step, args=args, force=True)
    except Exception as error:
        raise recovery.save_error(mngr, step, error) from error
    _pending[mngr] = step


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


def restore_latest(mngr: ocp.CheckpointManager, abstract_state, *, stream=None, init_opt_state=None):
    """(state, data position) of the latest good checkpoint, or None if there is none.

    A damaged step (unreadable, or its arrays differ from their saved checksums) is moved aside to
    `<workdir>/checkpoints_corrupt/` with a warning and the next newest is restored; a ValueError
    names the moved steps if none is left. A checkpoint of parameters alone (`workdir.write`) gets
    the fresh optimizer state `init_opt_state(params)` (e.g. from `Trainer.state_from_params`).

    Given a fresh `stream` (`pipeline.BatchStream` at position 0), its iterator is restored in
    place when the checkpoint holds its state; `stream.position` says whether it was (it is then
    the data position; 0 if it was not, and the caller skips to the data position).
    """

    def attempt(step):
        saved = recovery.read_meta(mngr, step)
        params_only = saved is not None and "opt_state" not in saved["parts"]
        target = {"step": abstract_state.step, "params": abstract_state.params} if params_only else abstract_state
        items = dict(state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore())
        if stream is not None and (epath.Path(mngr.directory) / str(step) / "input").exists():
            items["input"] = input_state.InputRestore(stream)
        restored = mngr.restore(step, args=ocp.args.Composite(**items))
        recovery.verify(saved, restored.state)
        return restored, params_only

    found = recovery.restore_newest_good(mngr, attempt)
    if found is None:
        return None
    restored, params_only = found
    if restored.get("input"):
        stream.position = restored.data["batches"]
    state = restored.state
    if params_only:  # e.g. a converted model (`workdir.write`): a fresh optimizer state
        if init_opt_state is None:
            raise ValueError(f"{mngr.directory} holds parameters alone; restoring it needs init_opt_state.")
        opt_state = init_opt_state(state["params"])
        state = abstract_state.replace(step=state["step"], params=state["params"], opt_state=opt_state)
    return state, restored.data["batches"]


def restore_params(directory: str, abstract_params):
    """The parameters alone of the latest good checkpoint under `directory`, an Orbax checkpoint
    directory of train states (optimizer state is not read: Orbax partial restore). Damaged steps
    are moved aside and the next newest is used (`recovery.restore_newest_good`).

    Returns (params, step); fails with a clear message if there is no checkpoint.
    """
    target = {"params": abstract_params}
    restore_args = ocp.checkpoint_utils.construct_restore_args(target)

    with ocp.CheckpointManager(epath.Path(directory), item_names=("state", "meta")) as mngr:

        def attempt(step):
            saved = recovery.read_meta(mngr, step)
            args = ocp.args.PyTreeRestore(item=target, restore_args=restore_args, partial_restore=True)
            params = mngr.restore(step, args=ocp.args.Composite(state=args)).state["params"]
            recovery.verify(saved, {"params": params})
            return params, step

        found = recovery.restore_newest_good(mngr, attempt)
    if found is None:
        raise ValueError(f"{directory} holds no checkpoint; train first (python -m glm_jax.train).")
    return found


def best_manager(workdir: str, metric: str) -> ocp.CheckpointManager:
    """Parameters of the best evaluation so far by `metric` (higher is better), in `workdir/best`."""
    options = ocp.CheckpointManagerOptions(max_to_keep=1, best_fn=lambda m: m[metric], best_mode="max")
    return ocp.CheckpointManager(epath.Path(workdir) / "best", options=options, item_names=("params", "scores"))


def save_if_best(mngr: ocp.CheckpointManager, step: int, params, scores: dict) -> None:
    """Keeps `params` if `scores` beat the best kept (Orbax keeps the one best by its metric)."""
    args = ocp.args.Composite(params=ocp.args.StandardSave(params), scores=ocp.args.JsonSave(scores))
    mngr.save(step, args=args, metrics=scores, force=True)


def restore_best(mngr: ocp.CheckpointManager, abstract_params):
    """(params, step, scores) of the best checkpoint, or None if there is none."""
    step = mngr.best_step()
    if step is None:
        return None
    args = ocp.args.Composite(params=ocp.args.StandardRestore(abstract_params), scores=ocp.args.JsonRestore())
    restored = mngr.restore(step, args=args)
    return restored.params, step, restored.scores


def has_checkpoints(workdir: str) -> bool:
    """Whether `workdir/checkpoints` holds a committed step (Orbax's partial `N.orbax-checkpoint-tmp`
    directories and steps moved aside to `checkpoints_corrupt` do not count)."""
    directory = epath.Path(workdir) / "checkpoints"
    return directory.exists() and any(p.name.isdigit() for p in directory.iterdir())


def _get(c: ml_collections.ConfigDict, dotted: str):
    for key in dotted.split("."):
        c = c[key]
    return c.to_dict() if isinstance(c, ml_collections.ConfigDict) else c


def check_or_write_config(workdir: str, c: ml_collections.ConfigDict) -> None:
    """Writes `config.json`; a workdir holding checkpoints requires the keys that must match.

    Fails before any work with the differing keys, so a resumed run never silently changes the
    model or the data stream of the checkpoints already written. A workdir is committed to its
    config by its first checkpoint only: before one exists (e.g. the first start failed), a
    different config replaces the saved one, with a console line saying so.
    """
    path = epath.Path(workdir) / "config.json"
    if path.exists():
        saved = ml_collections.ConfigDict(json.loads(path.read_text()))
        diffs = [k for k in _MUST_MATCH if _get(saved, k) != _get(c, k)]
        shown = ", ".join(f"{k}: {_get(saved, k)} → {_get(c, k)}" for k in diffs)
        if diffs and not has_checkpoints(workdir):
            cli.say(f"{workdir}/config.json differs ({shown}) but no checkpoint was written with it; replacing it.")
        elif diffs:
            raise ValueError(
                f"{workdir} holds a run with a different config ({shown}). Use the same values to resume, "
                "or a new --workdir."
            )
    if jax.process_index() == 0:  # written whole, then renamed: other processes never read half a file
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.parent / "config.json.tmp"
        partial.write_text(c.to_json(indent=2))
        partial.replace(path)
