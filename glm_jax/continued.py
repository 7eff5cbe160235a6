"""Continued pretraining: `glm_jax.train --init DIR` starts from the parameters of workdir DIR.

DIR is a workdir of `glm_jax.train` or `glm_jax.convert`. The run takes DIR's model (layers, width,
heads, MLP ratio, layer stacking and the scheme of positions and mask) with a fresh optimizer at
step 0; its task, objective and training settings are the config's. Two things may grow
(`training.grow_embeddings`, whose docstring gives the rules):

- the word embeddings, when the config's vocabulary (with sentinel tokens, their rows) needs more
  rows than DIR has: to `model.vocab_size` if set, else to the ids rounded up to 128; the new rows
  start as `train.init_new_rows` says (a new token whose id falls on a padding row of DIR keeps it);
- both position tables, when `model.max_len` is larger than DIR's (`train.init_new_positions`).

`train.init` records DIR in the run's config.json. Once the run holds checkpoints it resumes them as
any run does, with or without `--init` (which is then not read again); `--init` of another DIR on it
is refused. Bad input is a ValueError before any parameter is read or anything is written.
"""

from typing import NamedTuple

import jax
import ml_collections

from glm_jax import config as config_lib
from glm_jax import console
from glm_jax import workdir as workdir_lib
from glm_jax.data import vocab
from glm_jax.training import checkpoints
from glm_jax.training.grow_embeddings import Growth, grow_params

# DIR's model keys a config must not contradict where it sets them (to other than the defaults).
ASKED_KEYS = ("num_layers", "hidden", "heads", "mlp_ratio")
KEPT_KEYS = (*ASKED_KEYS, "scan_layers", *workdir_lib.SCHEME_KEYS)  # the shape keys that never grow
INIT_KEYS = ("init", "init_new_rows", "init_new_positions")  # train.*: what the run started from, and how
POSITIONS_DONE = {"copy": "copied", "interpolate": "interpolated", "official": "official init"}


def config_for(c: ml_collections.ConfigDict, init: str | None, workdir: str) -> ml_collections.ConfigDict:
    """`c` completed for a run in `workdir` (absolute) started from the workdir `init` (None: none): its
    model from `init`'s config.json with the grown sizes and `train.init` set, or, where `workdir` holds
    checkpoints of such a run, from the workdir's own config.json."""
    if checkpoints.has_checkpoints(workdir):
        return _resumed(c, init, workdir)
    return _from_init(c, workdir_lib.absolute(init)) if init else c


def _resumed(c, init: str | None, workdir: str) -> ml_collections.ConfigDict:
    saved = workdir_lib.read_config(workdir)
    started = saved.train.init
    if init and workdir_lib.absolute(init) != started:
        origin = f"--init {started}" if started else "fresh parameters (no --init)"
        raise ValueError(
            f"{workdir} holds checkpoints of a run started from {origin}, not from --init {init}: "
            "use a new --workdir, or the run's own --init to resume it."
        )
    if not started:
        return c
    c = workdir_lib.with_model_of(c, saved, workdir_lib.SHAPE_KEYS + workdir_lib.SCHEME_KEYS)
    for key in INIT_KEYS:
        c.train[key] = saved.train[key]
    again = "; --init is not read again" if init else ""
    console.say(f"{workdir} holds checkpoints of a run started from {started}: resuming them{again}")
    return c


def _from_init(c, init: str) -> ml_collections.ConfigDict:
    base = workdir_lib.read_config(init)
    if not checkpoints.has_checkpoints(init):
        raise ValueError(f"--init {init} holds no checkpoint in {init}/checkpoints; train or convert one first.")
    defaults = config_lib.base_config().model
    asked = [k for k in ASKED_KEYS if c.model[k] not in (defaults[k], base.model[k])]
    if asked:
        theirs, ours = (", ".join(f"model.{k}={m[k]}" for k in asked) for m in (base.model, c.model))
        raise ValueError(
            f"--init {init} is a model of {theirs}; the config asks for {ours}: use a config of that shape "
            "(or set those keys to its values)."
        )
    old_len, new_len = config_lib.max_len(base), c.model.max_len or config_lib.max_len(base)
    if new_len < old_len:
        raise ValueError(f"model.max_len={new_len} is below the {old_len} positions of --init {init}: they only grow.")
    if c.data.seq_len > new_len:
        raise ValueError(
            f"data.seq_len={c.data.seq_len} is longer than the positions of --init {init} (max_len {old_len}): "
            f"extend them with --config.model.max_len={c.data.seq_len} (train.init_new_positions says how)."
        )
    grown = workdir_lib.with_model_of(c, base, KEPT_KEYS)
    grown.model.max_len = new_len
    old_vocab, new_vocab = workdir_lib.model_vocabulary(base), workdir_lib.model_vocabulary(grown)
    if vocab.command_tokens(old_vocab) != vocab.command_tokens(new_vocab):
        raise ValueError(
            f"The run's vocabulary ({new_vocab.vocab_size} ids) numbers its command tokens unlike that of --init "
            f"{init} ({old_vocab.vocab_size} ids), so its rows would hold other tokens: use that vocabulary, or one "
            "that adds ids after its own."
        )
    old = _sizes(base, old_vocab)
    if c.model.vocab_size and c.model.vocab_size < old.rows:
        raise ValueError(
            f"model.vocab_size={c.model.vocab_size} is fewer rows than the {old.rows} of --init {init}: rows are "
            "only added (model.vocab_size=0 keeps them, adding rows where the vocabulary needs more)."
        )
    new = _sizes(grown, new_vocab)  # a model.vocab_size below the vocabulary's ids is named here
    grown.model.vocab_size = c.model.vocab_size or (old.rows if old.rows >= new.ids else new.rows)
    grown.train.init = init
    return grown


class Sizes(NamedTuple):
    ids: int  # token ids the model uses (its vocabulary's, and the sentinel tokens')
    rows: int  # word-embedding rows
    max_len: int  # largest position


def _sizes(c: ml_collections.ConfigDict, vocabulary) -> Sizes:
    return Sizes(*config_lib.embedding_rows(c, vocabulary.vocab_size), config_lib.max_len(c))


def start_state(c: ml_collections.ConfigDict, trainer):
    """Step 0 of a run of `config_for`: the latest good parameters of `train.init` (damaged checkpoints are
    moved aside, see `workdir.load`) grown to `trainer`'s model, and a fresh optimizer state."""
    init = c.train.init
    model = workdir_lib.load(init, trainer.mesh)
    old, new = _sizes(model.config, model.vocabulary), _sizes(c, workdir_lib.model_vocabulary(c))
    growth = Growth(new.rows, new.max_len, old.ids, c.train.init_new_rows, c.train.init_new_positions)
    params = jax.jit(lambda p, key: grow_params(p, growth, key))(model.params, jax.random.key(c.train.seed))
    console.say(f"initialized from {init} step {model.step}: {summary(old, new, c.train)}")
    return trainer.state_from_params(params)


def summary(old: Sizes, new: Sizes, train: ml_collections.ConfigDict) -> str:
    """What growing `old` to `new` did, e.g. `2 tokens added (rows 8000 -> 8064, official init), positions
    64 -> 128 (copied)`."""
    added = new.ids - old.ids
    tokens = f"{added} token{'s' * (added != 1)} added" if added > 0 else "no tokens added"
    grown = new.rows > old.rows
    rows = f"rows {old.rows} -> {new.rows}, {train.init_new_rows} init" if grown else f"its {old.rows} rows"
    if new.max_len > old.max_len:
        positions = f"positions {old.max_len} -> {new.max_len} ({POSITIONS_DONE[train.init_new_positions]})"
    else:
        positions = f"positions up to {old.max_len}"
    return f"{tokens} ({rows}), {positions}"
