"""A trained model from a workdir (config + latest checkpoint), and a workdir from given parameters.

Generation, zero-shot evaluation and checkpoint conversion all go through here, so they read and
write exactly what `glm_jax.train` does: `config.json` and Orbax checkpoints of the train state.
"""

import dataclasses
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import seqio
from etils import epath

from glm_jax import config as config_lib
from glm_jax.config import model_config
from glm_jax.data import pipeline, tasks, vocab, vocab_spec
from glm_jax.model.glm import GLMConfig
from glm_jax.training import checkpoints, sharding
from glm_jax.training.objective import contract_sums
from glm_jax.training.trainer import Trainer


@dataclasses.dataclass
class Model:
    """A model ready to run: its config, vocabulary, parameters (laid out on `trainer.mesh`) and step."""

    config: ml_collections.ConfigDict
    glm_config: GLMConfig
    vocabulary: seqio.Vocabulary
    trainer: Trainer
    params: Any
    step: int


def absolute(workdir: str) -> str:
    """Orbax needs absolute paths; URLs (gs://...) are kept. A workdir that is a file is an error."""
    if epath.Path(workdir).is_file():
        raise ValueError(f"--workdir {workdir} is a file; name a directory (new, or of an earlier run).")
    return workdir if "://" in workdir else os.path.abspath(workdir)


def read_config(workdir: str) -> ml_collections.ConfigDict:
    """The run's `config.json` over today's defaults (keys added since the run keep their defaults)."""
    path = epath.Path(workdir) / "config.json"
    if not path.exists():
        raise ValueError(f"{workdir} has no config.json: it is not a glm_jax workdir (see glm_jax.train or convert).")
    c = config_lib.base_config()
    c.update(ml_collections.ConfigDict(json.loads(path.read_text())))
    return c


def model_vocabulary(c: ml_collections.ConfigDict) -> seqio.Vocabulary:
    """`data.vocabulary` if set (e.g. a converted model's), else the vocabulary of `data.task`."""
    if c.data.vocabulary:
        return vocab_spec.from_spec(c.data.vocabulary)
    pipeline.import_task_module(c.data.task_module)
    return pipeline.get_task(c.data.task).output_features["inputs"].vocabulary


def pretraining_max_scored(c: ml_collections.ConfigDict) -> int:
    """The most scored positions a pretraining row of config `c` holds (`tasks.max_scored`), data.seq_len
    where the task is not registered here (e.g. a converted model's workdir): nothing tighter known."""
    try:
        pipeline.import_task_module(c.data.task_module)
        return tasks.max_scored(c.data.task, c.data.seq_len, pack=c.data.pack)
    except ValueError:
        return c.data.seq_len


def trainer_for(
    c: ml_collections.ConfigDict,
    mesh=None,
    objective=contract_sums,
    model_vocab: seqio.Vocabulary | None = None,
    max_scored: int | None = None,
) -> tuple[Trainer, seqio.Vocabulary]:
    """The trainer of config `c` with `objective` on `mesh` (default: every device on the data axis),
    and its vocabulary (`model_vocab`, or the one `c` names). `max_scored`: the most scored positions
    a row holds (for the contract objective's capacity); default: pretraining's, from `c`'s task."""
    model_vocab = model_vocab or model_vocabulary(c)
    glm_config = model_config(c, model_vocab.vocab_size, vocab.command_tokens(model_vocab))
    bound = pretraining_max_scored(c) if max_scored is None else max_scored
    return Trainer(c, glm_config, mesh or sharding.make_mesh(), objective, max_scored=bound), model_vocab


def load(workdir: str, mesh=None) -> Model:
    """The parameters of the latest good checkpoint of `workdir` (the optimizer state is not read;
    damaged checkpoints are moved aside, see `checkpoints.restore_params`); fails with a clear
    message if there is none."""
    workdir = absolute(workdir)
    c = read_config(workdir)
    trainer, model_vocab = trainer_for(c, mesh)
    params, step = checkpoints.restore_params(f"{workdir}/checkpoints", trainer.abstract_state.params)
    return Model(c, trainer.glm_config, model_vocab, trainer, params, int(step))


def write(workdir: str, c: ml_collections.ConfigDict, params) -> None:
    """A new workdir holding `params` as its step-0 checkpoint, of parameters alone.

    No optimizer state is made (memory: the parameters once, on their devices); `glm_jax.train` on
    the workdir starts a fresh one (`checkpoints.restore_latest`) and continues training from these
    parameters; `load` reads them back. Refuses a workdir that already holds checkpoints, so
    nothing written is ever replaced.
    """
    workdir = absolute(workdir)
    if (epath.Path(workdir) / "checkpoints").exists():
        raise ValueError(f"{workdir} already holds checkpoints; choose a new directory.")
    trainer, _ = trainer_for(c)
    checkpoints.check_or_write_config(workdir, c)
    state = {"step": jnp.zeros((), jnp.int32), "params": jax.device_put(params, trainer.state_shardings.params)}
    mngr = checkpoints.manager(workdir, c)
    try:
        checkpoints.save(mngr, 0, state, 0)
        checkpoints.finish(mngr)
    finally:
        checkpoints.close_quietly(mngr)
