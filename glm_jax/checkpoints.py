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
