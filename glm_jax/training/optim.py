"""The official GLM optimizer: AdamW, linear warmup then cosine (pretraining) or linear (fine-tuning)
decay, global-norm clipping."""

import jax
import ml_collections
import optax

SCHEDULES = ("cosine", "linear")


def learning_rate_schedule(c: ml_collections.ConfigDict, steps: int) -> optax.Schedule:
    """Linear warmup over `warmup_fraction` of the decay steps, then `schedule` (cosine or linear)
    decay to `end_lr_ratio` × peak at the last decay step."""
    decay_steps = c.decay_steps or steps
    if c.schedule == "linear":
        warmup = int(c.warmup_fraction * decay_steps)
        return optax.join_schedules(
            [
                optax.linear_schedule(0.0, c.peak_lr, warmup),
                optax.linear_schedule(c.peak_lr, c.end_lr_ratio * c.peak_lr, decay_steps - warmup),
            ],
            [warmup],
        )
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=c.peak_lr,
        warmup_steps=int(c.warmup_fraction * decay_steps),
        decay_steps=decay_steps,
        end_value=c.end_lr_ratio * c.peak_lr,
    )


NO_DECAY = ("bias", "scale")  # parameter names without weight decay: biases and LayerNorm gains


def decay_mask(params):
    """Weight decay on weights and embeddings; none on biases and LayerNorm parameters, as in the
    official code. By name, not by rank: the fused QKV bias is `[3, heads, head_dim]`, and scanned
    layers stack every parameter on a leading axis."""

    def decayed(path, _):
        names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
        return names[-1] not in NO_DECAY

    return jax.tree_util.tree_map_with_path(decayed, params)


def make_optimizer(c: ml_collections.ConfigDict, steps: int) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(c.clip_norm),
        optax.adamw(
            learning_rate_schedule(c, steps), b1=c.b1, b2=c.b2, eps=c.eps, weight_decay=c.weight_decay, mask=decay_mask
        ),
    )
