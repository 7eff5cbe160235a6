"""Train state, its shardings, and the jitted train and eval steps."""

import contextlib
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging

from glm_jax.data.command_tokens import CommandTokens
from glm_jax.model import layout
from glm_jax.model.glm import GLM, GLMConfig, init_params
from glm_jax.training import losses, optim, sharding


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any


def attention_path(c: ml_collections.ConfigDict, platform: str) -> str:
    """`model.attention` resolved for `platform` (cpu, gpu, tpu): auto is splash on TPU without attention dropout."""
    wanted = c.model.attention
    if wanted != "auto":
        return wanted
    if platform != "tpu":
        return "xla"
    if c.model.attention_dropout > 0.0:
        logging.warning(
            "model.attention=auto: using the xla attention, because splash has no attention dropout and "
            "model.attention_dropout=%s (set it to 0 for splash).",
            c.model.attention_dropout,
        )
        return "xla"
    return "splash"


def model_config(
    c: ml_collections.ConfigDict, vocab_size: int, tokens: CommandTokens, platform: str | None = None
) -> GLMConfig:
    """The model of config `c` for a vocabulary of `vocab_size` ids (rows padded to 128), to run on
    `platform` (default: JAX's default backend; `glm_jax.compile` passes the topology's)."""
    m = c.model
    platform = platform or jax.default_backend()
    rows = m.vocab_size or -(-vocab_size // 128) * 128
    if rows < vocab_size:
        raise ValueError(f"model.vocab_size={m.vocab_size} is smaller than the task vocabulary ({vocab_size}).")
    return GLMConfig(
        vocab_size=rows,
        num_layers=m.num_layers,
        hidden=m.hidden,
        heads=m.heads,
        max_len=m.max_len or c.data.seq_len,
        blank_markers=tokens.blank_markers,
        mlp_ratio=m.mlp_ratio,
        dropout=m.dropout,
        attention_dropout=m.attention_dropout,
        dtype=m.dtype,
        scan_layers=m.scan_layers,
        remat=m.remat,
        attention=attention_path(c, platform),
        splash_interpret=platform != "tpu",
    )


def contract_sums(
    config: GLMConfig, params, batch, *, deterministic: bool = True, rng=None, label_smoothing: float = 0.0
) -> dict:
    """The pretraining objective (and seq2seq fine-tuning's, with label smoothing): Part B
    cross-entropy sums of a batch of contract fields."""
    rngs = {} if rng is None else {"dropout": rng}
    logits = GLM(config).apply({"params": params}, batch, deterministic=deterministic, rngs=rngs)
    return losses.scored_sums(logits, batch, label_smoothing)


class Trainer:
    """Holds the model, optimizer and mesh; builds sharded state and the compiled steps.

    `objective(glm_config, params, batch, deterministic=, rng=)` gives the sums of a batch that
    the steps train and evaluate on (`loss_sum`, `correct_sum`, `weight_sum`, see `losses`): the
    pretraining objective by default, a fine-tuning one for downstream tasks.
    """

    def __init__(self, config: ml_collections.ConfigDict, glm_config: GLMConfig, mesh, objective=contract_sums):
        self.config = config
        self.objective = objective
        self.model = GLM(glm_config)
        self.glm_config = glm_config
        self.mesh = mesh
        self.schedule = optim.learning_rate_schedule(config.optimizer, config.train.steps)
        self.optimizer = optim.make_optimizer(config.optimizer, config.train.steps)
        boxed = jax.eval_shape(self._init_boxed, jax.random.key(0))
        self.state_shardings = sharding.logical_shardings(boxed, mesh)
        self.batch_sharding = sharding.batch_sharding(mesh)
        self.abstract_state = jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), nn.unbox(boxed), self.state_shardings
        )
        replicated = sharding.replicated(mesh)
        self._jit_train_step = jax.jit(
            self._train_step,
            in_shardings=(self.state_shardings, self.batch_sharding),
            out_shardings=(self.state_shardings, replicated),
            donate_argnums=0,
        )
        markers = glm_config.blank_markers
        self._jit_visible_pairs = jax.jit(lambda b: layout.visible_pairs(*layout.layout(b, markers)[2:]))
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
        """Step 0 with `params` (e.g. restored or converted) and a fresh optimizer state, sharded."""
        params = jax.device_put(params, self.state_shardings.params)
        opt_state = jax.jit(self.optimizer.init, out_shardings=self.state_shardings.opt_state)(params)
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state)

    def num_params(self) -> int:
        return sum(x.size for x in jax.tree.leaves(self.abstract_state.params))

    def _summed_grads(self, params, batch, rng):
        """Gradients of the objective's summed loss over `batch`, and its sums."""

        def loss_fn(p):
            sums = self.objective(self.glm_config, p, batch, deterministic=False, rng=rng)
            return sums["loss_sum"], sums

        return jax.grad(loss_fn, has_aux=True)(params)

    def _train_step(self, state: TrainState, batch):
        """One update on the whole batch, accumulated over `train.microbatches` slices of its rows.

        The loss is the summed Part B cross-entropy over all slices divided by their total Part B
        count, so k microbatches of B/k rows give the update of one batch of B rows.
        """
        rng = jax.random.fold_in(jax.random.key(self.config.train.seed), state.step)
        k = self.config.train.microbatches
        if k == 1:
            grads, sums = self._summed_grads(state.params, batch, rng)
        else:
            # Slice i holds rows i, i + k, ...: every slice spreads over all the devices of the batch.
            slices = jax.tree.map(lambda x: x.reshape(x.shape[0] // k, k, *x.shape[1:]), batch)

            def accumulate(total, i):
                micro = jax.tree.map(lambda x: x[:, i], slices)
                grads, sums = self._summed_grads(state.params, micro, jax.random.fold_in(rng, i))
                return jax.tree.map(jnp.add, total, (grads, sums)), None

            zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(self._summed_grads, state.params, batch, rng))
            (grads, sums), _ = jax.lax.scan(accumulate, zeros, jnp.arange(k))
        count = losses.scored_count(sums)
        grads = jax.tree.map(lambda g: g / count, grads)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
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

        params = unless_nonfinite(optax.apply_updates(state.params, updates), state.params)
        opt_state = unless_nonfinite(opt_state, state.opt_state)
        metrics["nonfinite"] = jnp.logical_not(finite)
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    def _eval_step(self, params, batch):
        return self.objective(self.glm_config, params, batch)

    def device_batch(self, host_batch: dict) -> dict:
        """This process's rows → one global array per field, laid out by the batch sharding."""
        return {k: jax.make_array_from_process_local_data(self.batch_sharding, v) for k, v in host_batch.items()}
