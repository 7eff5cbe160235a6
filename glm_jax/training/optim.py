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


def decay_mask(params):
    """Weight decay on matrices only: LayerNorm parameters and biases (all 1-D) are excluded."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(c: ml_collections.ConfigDict, steps: int) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(c.clip_norm),
        optax.adamw(
            learning_rate_schedule(c, steps), b1=c.b1, b2=c.b2, eps=c.eps, weight_decay=c.weight_decay, mask=decay_mask
        ),
    )
