"""Train state, its shardings, and the jitted train and eval steps."""

import contextlib
import functools
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from glm_jax import console
from glm_jax.model import layout, prompt
from glm_jax.model.glm import GLM, GLMConfig, init_params
from glm_jax.model.lora import ADAPTER
from glm_jax.training import frozen_base, losses, optim, sharding, trainable
from glm_jax.training.objective import ScoredCapacityError, contract_sums, is_contract_objective, scored_capacity


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any


class Trainer:
    """Holds the model, optimizer and mesh; builds sharded state and the compiled steps.

    `objective(glm_config, params, batch, deterministic=, rng=)` gives the sums of a batch that
    the steps train and evaluate on (`loss_sum`, `correct_sum`, `weight_sum`, see `losses`): the
    pretraining objective by default, a fine-tuning one for downstream tasks. The contract
    objective (`contract_sums`, or a partial of it) gets `capacity=scored_capacity(config,
    max_scored)` (`max_scored`: the most scored positions a row can hold, from the data side;
    default data.seq_len, nothing tighter known): logits
    only at the scored positions, `scored_capacity` slots per row (0: at all positions); a host
    batch over it is refused by `device_batch`. It also gets `logits_chunk=train.logits_chunk`.
    Keywords the partial already sets are kept.

    Only the parameters `train.trainable` selects train (`trainable.Selection`, `selection`): the step
    differentiates and updates those, the optimizer state covers those, and checkpoints hold those
    (`stored_params`, `abstract_stored`); the frozen rest passes through the step unchanged.
    """

    # Top-level parameter keys beside the model's that a subclass adds (a fine-tuning head): a pretrained
    # checkpoint lacks them, so fine-tuning restores the others and these start fresh (`state_from_params`).
    new_params: tuple[str, ...] = ()
    # The verbalizer's token ids, which prompt.init mixes into the prompt spell's start (a kind sets them).
    prompt_task_tokens: tuple[int, ...] = ()

    def __init__(self, config: ml_collections.ConfigDict, glm_config: GLMConfig, mesh, objective=contract_sums,
                 max_scored: int | None = None):  # fmt: skip
        self.config = config
        self.scored_capacity = 0
        if is_contract_objective(objective):
            given = getattr(objective, "keywords", {})
            bound = config.data.seq_len if max_scored is None else max_scored
            self.scored_capacity = given["capacity"] if "capacity" in given else scored_capacity(config, bound)
            settings = {"capacity": self.scored_capacity, "logits_chunk": config.train.logits_chunk}
            unset = {key: value for key, value in settings.items() if key not in given and value}
            objective = functools.partial(objective, **unset) if unset else objective
        self.objective = objective
        self.model = GLM(glm_config)
        self.glm_config = glm_config
        self.mesh = mesh
        p = config.prompt
        self.selection = trainable.Selection(config.train.trainable, glm_config.lora.rank, self.new_params,
                                             p.freeze_transformer, p.tune_prefix_layers)  # fmt: skip
        self.schedule = optim.learning_rate_schedule(config.optimizer, config.train.steps)
        self.optimizer = self.selection.optimizer(optim.make_optimizer(config.optimizer, config.train.steps))
        boxed = jax.eval_shape(self._init_boxed, jax.random.key(0))
        self.selection.check(boxed.params)
        self.state_shardings = sharding.logical_shardings(boxed, mesh)
        self.batch_sharding = sharding.batch_sharding(mesh)
        self.abstract_state = jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), nn.unbox(boxed), self.state_shardings
        )
        # What a checkpoint holds: the trainable parameters (all of them unless some are frozen) and the rest.
        self.abstract_stored = self.abstract_state.replace(params=self.selection.split(self.abstract_state.params)[0])
        replicated = sharding.replicated(mesh)
        self._jit_train_step = jax.jit(
            self._train_step,
            in_shardings=(self.state_shardings, self.batch_sharding),
            out_shardings=(self.state_shardings, replicated),
            donate_argnums=0,
        )
        markers, scheme = glm_config.blank_markers, glm_config.scheme
        self._jit_visible_pairs = jax.jit(lambda b: layout.visible_pairs(*layout.layout(b, markers, scheme)[2:]))
        self._jit_eval_step = jax.jit(
            self._eval_step, in_shardings=(self.state_shardings.params, self.batch_sharding), out_shardings=replicated
        )

    @contextlib.contextmanager
    def partitioning(self):
        """The mesh and logical-axis rules that activation constraints resolve against while tracing."""
        with jax.set_mesh(self.mesh), nn.logical_axis_rules(sharding.RULES):
            yield

    def train_step(self, state: TrainState, batch):
        """(new state, metrics) of one jitted, sharded update; `state` is donated."""
        with self.partitioning():
            return self._jit_train_step(state, batch)

    def eval_step(self, params, batch):
        with self.partitioning():
            return self._jit_eval_step(params, batch)

    def logit_tokens(self, rows: int, seq_len: int) -> int:
        """Positions a step over `rows` rows of `seq_len` computes logits at (for `flops.train_flops`)."""
        return rows * (self.scored_capacity or seq_len)

    def visible_pairs(self, batch) -> float:
        """Query-key pairs the mask of a (device) batch allows: the attention term of its FLOPs."""
        return float(self._jit_visible_pairs(batch))

    def lower_train_step(self, state, batch):
        """The lowered train step for abstract (shape, dtype, sharding) arguments: compile-only use."""
        with self.partitioning():
            return self._jit_train_step.lower(state, batch)

    def _init_boxed(self, rng):
        params = init_params(self.glm_config, rng, self.config.data.seq_len)
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.optimizer.init(params))

    def init_state(self, seed: int) -> TrainState:
        """Fresh state, created directly in its sharded layout."""
        init = jax.jit(lambda rng: nn.unbox(self._init_boxed(rng)), out_shardings=self.state_shardings)
        return init(jax.random.key(seed))

    def state_from_params(self, params) -> TrainState:
        """Step 0 with `params` (e.g. restored or converted; LoRA adapters and a prompt spell they lack start fresh,
        the spell as prompt.init says) and a fresh optimizer state, sharded."""
        params = jax.device_put(self._with_fresh_parameters(params), self.state_shardings.params)
        if self.config.prompt.init and self.glm_config.prompt.length:
            params = self._init_spell(params)
        opt_state = jax.jit(self.optimizer.init, out_shardings=self.state_shardings.opt_state)(params)
        step = jax.device_put(jnp.zeros((), jnp.int32), self.state_shardings.step)  # as the step returns it
        return TrainState(step=step, params=params, opt_state=opt_state)

    def pretrained_params(self):
        """The abstract parameters a pretrained checkpoint holds: all but the trainer's new ones (`new_params`),
        the LoRA adapters and the prompt spell, which start fresh (`state_from_params`)."""
        leaves = trainable.flat(self.abstract_state.params)
        return trainable.nest({p: x for p, x in leaves.items() if p[0] not in self.new_params and not _is_fresh(p)})

    def fresh_params(self, seed: int, paths=None):
        """The model's parameters (not the trainer's `new_params`) a run with `seed` starts from, in the trainer's
        layout; those at `paths` only, if given (the others are never computed)."""
        pick = (lambda tree: tree) if paths is None else (lambda tree: trainable.subtree(tree, paths))
        shardings = {k: v for k, v in self.state_shardings.params.items() if k not in self.new_params}
        seq_len = self.config.data.seq_len
        init = jax.jit(
            lambda rng: pick(nn.unbox(init_params(self.glm_config, rng, seq_len))), out_shardings=pick(shardings)
        )
        return init(jax.random.key(seed))

    def _with_fresh_parameters(self, params):
        """`params` with the LoRA adapters (B = 0, so the model is unchanged) and prompt spell they lack drawn fresh
        (from train.seed)."""
        have = trainable.flat(params)
        missing = [p for p in trainable.flat(self.abstract_state.params) if _is_fresh(p) and p not in have]
        if not missing:
            return params
        return trainable.nest({**have, **trainable.flat(self.fresh_params(self.config.train.seed, missing))})

    def _init_spell(self, params):
        """`params` with the spell embeddings of prompt.init (`prompt.init_embedding`) from their word embeddings."""
        tokens, length, seed = self.prompt_task_tokens, self.glm_config.prompt.length, self.config.train.seed
        console.say(
            f"prompt.init: {length} spell embeddings from word embeddings of ids < {prompt.INIT_WORDS}"
            + (f" mixed with the task tokens {list(tokens)}" if tokens else "")
            + f" (seed {seed})"
        )
        shardings = self.state_shardings.params[prompt.SPELL]
        init = functools.partial(prompt.init_embedding, length=length, task_tokens=tokens, seed=seed)
        start = jax.jit(init, out_shardings=shardings["spell_embeddings"])(params["word_embeddings"]["embedding"])
        return params | {prompt.SPELL: params[prompt.SPELL] | {"spell_embeddings": start}}

    def stored_params(self, params, origin: dict):
        """(what a checkpoint holds of `params`, its `base` item): the trainable parameters and the reference
        of the frozen rest, taken from `origin` (`frozen_base`); `params` and None where all train."""
        if not self.selection.freezes:
            return params, None
        kept, frozen = self.selection.split(params)
        return kept, frozen_base.reference(origin, frozen)

    def num_params(self) -> int:
        return sum(x.size for x in jax.tree.leaves(self.abstract_state.params))

    def _summed_grads(self, params, frozen, batch, rng):
        """Gradients of the objective's summed loss over `batch` with respect to the trainable `params` (the
        `frozen` rest are constants: no gradient is computed for them), and its sums."""

        def loss_fn(p):
            sums = self.objective(self.glm_config, self.selection.join(p, frozen), batch, deterministic=False, rng=rng)
            return sums["loss_sum"], sums

        return jax.grad(loss_fn, has_aux=True)(params)

    def _train_step(self, state: TrainState, batch):
        """One update on the whole batch, accumulated over `train.microbatches` slices of its rows.

        The loss is the summed Part B cross-entropy over all slices divided by their total Part B
        count, so k microbatches of B/k rows give the update of one batch of B rows.
        """
        rng = jax.random.fold_in(jax.random.key(self.config.train.seed), state.step)
        k = self.config.train.microbatches
        params, frozen = self.selection.split(state.params)
        if k == 1:
            grads, sums = self._summed_grads(params, frozen, batch, rng)
        else:
            # Slice i holds rows i, i + k, ...: every slice spreads over all the devices of the batch.
            slices = jax.tree.map(lambda x: x.reshape(x.shape[0] // k, k, *x.shape[1:]), batch)

            def accumulate(total, i):
                micro = jax.tree.map(lambda x: x[:, i], slices)
                grads, sums = self._summed_grads(params, frozen, micro, jax.random.fold_in(rng, i))
                return jax.tree.map(jnp.add, total, (grads, sums)), None

            zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(self._summed_grads, params, frozen, batch, rng))
            (grads, sums), _ = jax.lax.scan(accumulate, zeros, jnp.arange(k))
        count = losses.scored_count(sums)
        grads = jax.tree.map(lambda g: g / count, grads)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, params)
        metrics = {
            "loss": sums["loss_sum"] / count,
            "accuracy": sums["correct_sum"] / count,
            "grad_norm": optax.global_norm(grads),
            "update_norm": optax.global_norm(updates),
            "learning_rate": self.schedule(state.step),
        }
        # A step with a non-finite loss or norm leaves parameters and optimizer state as they were
        # (the loop then stops or skips it, `train.on_nonfinite`); finite steps are unchanged bit for bit.
        finite = (
            jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["grad_norm"]) & jnp.isfinite(metrics["update_norm"])
        )

        def unless_nonfinite(new, old):
            return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)

        params = self.selection.join(unless_nonfinite(optax.apply_updates(params, updates), params), frozen)
        opt_state = unless_nonfinite(opt_state, state.opt_state)
        metrics["nonfinite"] = jnp.logical_not(finite)
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    def _eval_step(self, params, batch):
        return self.objective(self.glm_config, params, batch)

    def device_batch(self, host_batch: dict) -> dict:
        """This process's rows of a train or eval batch → one global array per field, laid out by
        the batch sharding. With `scored_capacity` set, a batch with a row of more scored (Part B)
        positions than that is refused here, on the host, with a `ScoredCapacityError`."""
        self._check_capacity(host_batch)
        return self.put_batch(host_batch)

    def put_batch(self, host_batch: dict) -> dict:
        """`device_batch` without the capacity check, for rows scored with full logits (zero-shot)."""
        return {k: jax.make_array_from_process_local_data(self.batch_sharding, v) for k, v in host_batch.items()}

    def _check_capacity(self, host_batch: dict) -> None:
        if not self.scored_capacity or "loss_weights" not in host_batch:
            return
        counts = np.count_nonzero(np.asarray(host_batch["loss_weights"]) > 0, axis=-1)
        if counts.size == 0 or counts.max() <= self.scored_capacity:
            return
        row = int(np.argmax(counts))
        how = "set" if self.config.train.scored_capacity > 0 else "auto, from the objective's bound"
        raise ScoredCapacityError(
            f"Batch row {row} holds {int(counts[row])} scored (Part B) targets, more than the "
            f"{self.scored_capacity} per row of train.scored_capacity ({how}; data.seq_len="
            f"{self.config.data.seq_len}): raise --config.train.scored_capacity to at least "
            f"{int(counts[row])}, or set it to 0 for logits at every position."
        )


def _is_fresh(path: tuple) -> bool:
    """Whether a parameter starts fresh when fine-tuning from a pretrained model: a LoRA adapter, the prompt spell."""
    return ADAPTER in path or path[0] == prompt.SPELL
