"""Orbax checkpoints of the train state and the data-stream position, with exact resume."""

import json

import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath

# Config keys that fix parameter shapes or the data stream: a resumed run must match them.
_MUST_MATCH = ("model", "data.task", "data.seq_len", "data.batch_size", "data.pack", "data.host_split", "train.seed")


def manager(workdir: str, c: ml_collections.ConfigDict) -> ocp.CheckpointManager:
    """Asynchronous saves that keep the last `train.keep_checkpoints`; the caller decides when."""
    options = ocp.CheckpointManagerOptions(max_to_keep=c.train.keep_checkpoints, enable_async_checkpointing=True)
    return ocp.CheckpointManager(epath.Path(workdir) / "checkpoints", options=options, item_names=("state", "data"))


def save(mngr: ocp.CheckpointManager, step: int, state, data_position: int) -> None:
    """Starts saving `state` and the number of batches drawn so far; returns while it is written."""
    args = ocp.args.Composite(state=ocp.args.StandardSave(state), data=ocp.args.JsonSave({"batches": data_position}))
    mngr.save(step, args=args, force=True)


def restore_latest(mngr: ocp.CheckpointManager, abstract_state):
    """(state, data position) of the latest checkpoint, or None if there is none."""
    step = mngr.latest_step()
    if step is None:
        return None
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore())
    restored = mngr.restore(step, args=args)
    return restored.state, restored.data["batches"]


def restore_params(directory: str, abstract_params):
    """The parameters alone of the latest checkpoint under `directory`, an Orbax checkpoint directory
    of train states (optimizer state is not read: Orbax partial restore).

    Returns (params, step); fails with a clear message if there is no checkpoint.
    """
    with ocp.CheckpointManager(epath.Path(directory), item_names=("state",)) as mngr:
        step = mngr.latest_step()
        if step is None:
            raise ValueError(f"{directory} holds no checkpoint; train first (python -m glm_jax.train).")
        target = {"params": abstract_params}
        args = ocp.args.PyTreeRestore(
            item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True
        )
        restored = mngr.restore(step, args=ocp.args.Composite(state=args))
    return restored.state["params"], step


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


def _get(c: ml_collections.ConfigDict, dotted: str):
    for key in dotted.split("."):
        c = c[key]
    return c.to_dict() if isinstance(c, ml_collections.ConfigDict) else c


def check_or_write_config(workdir: str, c: ml_collections.ConfigDict) -> None:
    """Writes `config.json` in a new workdir; in an existing one, requires the keys that must match.

    Fails before any work with the differing keys, so a resumed run never silently changes the
    model or the data stream of the checkpoints already written.
    """
    path = epath.Path(workdir) / "config.json"
    if path.exists():
        saved = ml_collections.ConfigDict(json.loads(path.read_text()))
        diffs = [k for k in _MUST_MATCH if _get(saved, k) != _get(c, k)]
        if diffs:
            shown = ", ".join(f"{k}: {_get(saved, k)} → {_get(c, k)}" for k in diffs)
            raise ValueError(
                f"{workdir} holds a run with a different config ({shown}). Use the same values to resume, "
                "or a new --workdir."
            )
    if jax.process_index() == 0:  # written whole, then renamed: other processes never read half a file
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.parent / "config.json.tmp"
        partial.write_text(c.to_json(indent=2))
        partial.replace(path)
