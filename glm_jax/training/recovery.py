"""Checkpoints that survive damage and full disks.

Restoring: the steps of a checkpoint directory are tried newest first. A step that cannot be
restored (missing or truncated array files, unreadable metadata, an empty directory) or whose
arrays differ from the checksums saved with them is moved aside to `<directory>_corrupt/<step>`
(never deleted), with a warning naming the step and the reason, and the next newest is tried.

Checksums: each checkpoint holds an exact hash of every array (`checksums`).

Saving: a write that fails (full disk, file too large, permission denied), whether at once or
later in Orbax's background thread, becomes one `CheckpointSaveError` naming the checkpoint path
and the free space of its file system; the partial temporary directory is removed and the
checkpoints already written stay as they were.

Multi-host: every process attempts the same step and they agree (all-gather) on whether it
restored before any checksum, which is a collective; only process 0 moves directories, and all
wait for it before reading the directory again, so they all end on the same step.
"""

import errno
import os
import re
import shutil
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from glm_jax import console
from glm_jax.training.checksums import CorruptCheckpoint

_TMP_SUFFIX = ".orbax-checkpoint-tmp"


class CheckpointSaveError(ValueError):
    """A checkpoint that could not be written; the earlier ones are intact."""


# ----------------------------------------------------------------------------- restoring


def short_reason(error: BaseException) -> str:
    """One short line for a restore failure: the innermost cause's type and first line."""
    while error.__cause__ is not None:
        error = error.__cause__
    if isinstance(error, CorruptCheckpoint):
        return str(error)
    line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    line = line.split(" See full TensorStore details")[0].split(" [tensorstore_spec=")[0]
    if len(line) > 240:
        line = line[:240] + "…"
    return f"{type(error).__name__}: {line}" if line else type(error).__name__


def _precheck(step_dir: epath.Path, needed: tuple[str, ...]) -> None:
    if not step_dir.exists():
        raise CorruptCheckpoint("its directory has disappeared")
    present = {p.name for p in step_dir.iterdir()}
    if not present:
        raise CorruptCheckpoint("its directory is empty")
    missing = [item for item in needed if item not in present]
    if missing:
        raise CorruptCheckpoint(f"it has no {', '.join(missing)} item")


def _agree(ok: bool) -> bool:
    """True only where every process says `ok`."""
    if jax.process_count() == 1:
        return ok
    return bool(np.all(multihost_utils.process_allgather(np.array(ok))))


def read_meta(mngr: ocp.CheckpointManager, step: int) -> dict | None:
    """The `meta` item of a step, or None for checkpoints written before it existed."""
    if not (epath.Path(mngr.directory) / str(step) / "meta").exists():
        return None
    return mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta


def set_aside(directory: epath.Path, step: int, reason: str) -> epath.Path:
    """Moves step `step` of `directory` to `<directory>_corrupt/<step>[.N]` (process 0), saying why."""
    corrupt = directory.parent / f"{directory.name}_corrupt"
    target = corrupt / str(step)
    n = 0
    while target.exists():
        n += 1
        target = corrupt / f"{step}.{n}"
    if jax.process_index() == 0:
        corrupt.mkdir(parents=True, exist_ok=True)
        (directory / str(step)).rename(target)
        (corrupt / f"{target.name}.reason.txt").write_text(reason + "\n")
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"glm_jax_set_aside_{step}")
    message = f"Checkpoint step {step} in {directory} is damaged ({reason}); moved it to {target}."
    logging.warning(message)
    console.say(f"warning: {message}")
    return target


def restore_newest_good(mngr: ocp.CheckpointManager, attempt, needed: tuple[str, ...] = ("state",), order=None):
    """`attempt(step)` for the newest step it succeeds on (or the first in `order(steps)`), or None if
    there are no steps.

    A step it fails on (any exception, a CorruptCheckpoint from `verify` included) is moved aside
    and the next is tried; if none is left, a ValueError names the moved directories.
    """
    directory = epath.Path(mngr.directory)
    moved = []
    steps = sorted(mngr.all_steps(), reverse=True)
    for step in order(steps) if order else steps:
        error = None
        try:
            _precheck(directory / str(step), needed)
            result = attempt(step)
        except Exception as e:  # noqa: BLE001 - any failure to read a step means it is damaged
            error = e
        if _agree(error is None):
            if moved:
                console.say(f"restored checkpoint step {step} of {directory} instead")
            return result
        reason = short_reason(error) if error is not None else "another process could not restore it"
        moved.append(set_aside(directory, step, reason))
        mngr.reload()
    if moved:
        raise ValueError(
            f"No checkpoint in {directory} can be restored: the damaged ones were moved to "
            f"{', '.join(map(str, moved))} (move one back to retry it, or leave them to start afresh)."
        )
    return None


# ----------------------------------------------------------------------------- saving


def _os_error_code(error: BaseException) -> int | None:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno:
            return error.errno
        found = re.search(r"os_error_code='?(\d+)", str(error))
        if found:
            return int(found.group(1))
        error = error.__cause__ or error.__context__
    return None


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def free_space(path: epath.Path) -> str:
    """'N GiB free of M GiB' for the file system of `path` (its nearest existing parent)."""
    if "://" in str(path):
        return "free space unknown (remote storage)"
    p = os.path.abspath(str(path))
    while not os.path.exists(p) and os.path.dirname(p) != p:
        p = os.path.dirname(p)
    usage = shutil.disk_usage(p)
    return f"{_gib(usage.free)} free of {_gib(usage.total)} on that file system"


def save_error(mngr: ocp.CheckpointManager, step: int | None, error: BaseException) -> CheckpointSaveError:
    """The clear error for a failed save of `step`; removes its partial directory and refreshes the
    manager's step list (Orbax drops the earlier steps from it on a failed save)."""
    directory = epath.Path(mngr.directory)
    code = _os_error_code(error)
    if code is not None:
        reason = f"{errno.errorcode.get(code, code)}: {os.strerror(code)}"
    else:
        reason = short_reason(error)
    if jax.process_index() == 0 and step is not None:
        for partial in directory.glob(f"{step}{_TMP_SUFFIX}*"):
            partial.rmtree(missing_ok=True)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"glm_jax_save_error_{step}")
    mngr.reload()
    kept = mngr.all_steps()
    path = directory / str(step) if step is not None else directory
    resume = f"run again to resume from step {max(kept)}" if kept else "run again"
    return CheckpointSaveError(
        f"Could not write checkpoint {path} ({reason}); {free_space(directory)}. The checkpoints already "
        f"written ({', '.join(map(str, kept)) or 'none'}) are intact: free space or fix permissions, then {resume}."
    )


class _QuietOrbaxIOErrors:
    """Drops the tracebacks Orbax's background threads log for a failed write (each thread logs its
    own); the one-line messages stay, and `CheckpointSaveError` says what happened once."""

    def filter(self, record) -> bool:
        if record.exc_info and "orbax" in (record.pathname or "") and _os_error_code(record.exc_info[1]) is not None:
            record.exc_info, record.exc_text = None, None
        return True


_QUIET = _QuietOrbaxIOErrors()


def _is_late_tensorstore_callback(unraisable) -> bool:
    """A write that TensorStore completes after Orbax gave up on a failed save wakes an asyncio loop
    Orbax already closed; the RuntimeError of that callback reaches `sys.unraisablehook`."""
    error, tb = unraisable.exc_value, unraisable.exc_traceback
    if not isinstance(error, RuntimeError) or str(error) != "Event loop is closed":
        return False
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "call_soon_threadsafe":
            return True
        tb = tb.tb_next
    return False


def _unraisable_hook(previous):
    def hook(unraisable):
        if _is_late_tensorstore_callback(unraisable):
            logging.info("Ignored a TensorStore callback that came after its asyncio loop was closed.")
        else:
            previous(unraisable)

    hook.glm_jax_quiet = True
    return hook


def quiet_orbax_io_tracebacks() -> None:
    """Keeps stderr to one line per failure when a checkpoint write or read fails (see above)."""
    logger = logging.get_absl_logger()
    if _QUIET not in logger.filters:
        logger.addFilter(_QUIET)
    if not getattr(sys.unraisablehook, "glm_jax_quiet", False):
        sys.unraisablehook = _unraisable_hook(sys.unraisablehook)
