"""A trained model from a workdir (config + latest checkpoint), and a workdir from given parameters.

Generation, zero-shot evaluation and checkpoint conversion all go through here, so they read and
write exactly what `glm_jax.train` does: `config.json` and Orbax checkpoints of the train state.
"""

import dataclasses
import functools
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
from glm_jax.model import lora
from glm_jax.model.glm import GLMConfig
from glm_jax.model.lora import ADAPTER
from glm_jax.training import checkpoints, sharding, trainable
from glm_jax.training.objective import contract_sums
from glm_jax.training.trainer import Trainer

# Model keys that fix a run's parameters, and the scheme of positions and mask they were trained with: a run
# that starts from a workdir's parameters (fine-tuning, continued pretraining) takes them (`with_model_of`).
SHAPE_KEYS = ("vocab_size", "num_layers", "hidden", "heads", "mlp_ratio", "max_len", "scan_layers")
SCHEME_KEYS = ("block_positions", "sentinel_positions", "causal")


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


def with_model_of(c: ml_collections.ConfigDict, base: ml_collections.ConfigDict, keys) -> ml_collections.ConfigDict:
    """A copy of config `c` with the model `keys` of `base` (a workdir's config), its max_len made explicit."""
    c = ml_collections.ConfigDict(c.to_dict())
    for key in keys:
        c.model[key] = base.model[key]
    c.model.max_len = config_lib.max_len(base)
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
    trainer_class: type[Trainer] = Trainer,
) -> tuple[Trainer, seqio.Vocabulary]:
    """The trainer of config `c` with `objective` on `mesh` (default: every device on the data axis),
    and its vocabulary (`model_vocab`, or the one `c` names). `max_scored`: the most scored positions
    a row holds (for the contract objective's capacity); default: pretraining's, from `c`'s task.
    `trainer_class`: `Trainer`, or a subclass with parameters of its own (a classifier's)."""
    model_vocab = model_vocab or model_vocabulary(c)
    glm_config = model_config(c, model_vocab.vocab_size, vocab.command_tokens(model_vocab))
    bound = pretraining_max_scored(c) if max_scored is None else max_scored
    return trainer_class(c, glm_config, mesh or sharding.make_mesh(), objective, max_scored=bound), model_vocab


def load(workdir: str, mesh=None) -> Model:
    """The model of the latest good checkpoint of `workdir` (the optimizer state is not read;
    damaged checkpoints are moved aside, see `checkpoints.restore_params`), a LoRA run's adapters
    folded into its kernels (`stored_params`; its config is `config.merged_config`'s); fails with a
    clear message if there is none."""
    workdir = absolute(workdir)
    c = config_lib.merged_config(read_config(workdir))
    trainer, model_vocab = trainer_for(c, mesh)
    params, step = stored_params(workdir, trainer.abstract_state.params)
    return Model(c, trainer.glm_config, model_vocab, trainer, params, int(step))


def stored_params(workdir: str, abstract_params):
    """(params, step): the parameters `abstract_params` asks for of the model in the latest good checkpoint
    of `workdir` (absolute), laid out as they say. Where the run froze some parameters its checkpoints hold
    the others, and the frozen ones come from its base (`base_params`), checked against their saved
    checksums; where it has LoRA adapters, they are folded into their kernels (`lora.merge`)."""
    c = read_config(workdir)
    mesh = jax.tree.leaves(abstract_params)[0].sharding.mesh
    stored = abstract_params
    if c.lora.rank:  # restore the adapters of the kernels asked for too, then fold them in
        wanted = trainable.flat(abstract_params)
        trainer, _ = trainer_for(c, mesh, max_scored=c.data.seq_len)
        adapters = {
            path: x
            for path, x in trainable.flat(trainer.abstract_state.params).items()
            if ADAPTER in path and (*path[: path.index(ADAPTER)], "kernel") in wanted
        }
        stored = trainable.nest({**wanted, **adapters})
    params, step = checkpoints.restore_params(f"{workdir}/checkpoints", stored, base=base_params(c, mesh))
    if c.lora.rank:
        shardings = jax.tree.map(lambda x: x.sharding, abstract_params)
        merge = functools.partial(lora.merge, scale=config_lib.lora_config(c).scale)
        params = jax.jit(merge, out_shardings=shardings)(params)
    return params, step


def base_params(c: ml_collections.ConfigDict, mesh):
    """`base(reference, abstract)` for `checkpoints.restore_params`: the frozen parameters `abstract` of a run
    of config `c` from its `base` reference's origin, a workdir (`stored_params`) or fresh ones of a seed."""

    def base(reference: dict, abstract):
        origin = reference["origin"]
        if "workdir" in origin:
            return stored_params(origin["workdir"], abstract)[0]
        trainer, _ = trainer_for(c, mesh, max_scored=c.data.seq_len)
        return trainer.fresh_params(origin["seed"], list(trainable.flat(abstract)))

    return base


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
