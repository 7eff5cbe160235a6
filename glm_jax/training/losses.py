"""Part B cross-entropy and accuracy, as sums so that they add up over batches and devices."""

import jax
import jax.numpy as jnp
import optax


def smoothed_cross_entropy(logits, targets, label_smoothing: float):
    """Cross-entropy against targets smoothed over the vocabulary, `(1 - e) * onehot + e / V`:
    `(1 - e) * nll(target) + e * mean over the vocabulary of nll`, without a one-hot array."""
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    if not label_smoothing:
        return ce
    uniform = -jnp.mean(jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1), axis=-1)
    return (1.0 - label_smoothing) * ce + label_smoothing * uniform


def scored_sums(logits, batch, label_smoothing: float = 0.0) -> dict:
    """Sums over scored positions: cross-entropy (label-smoothed if asked), correct argmax, and the weight."""
    weights = batch["loss_weights"].astype(jnp.float32)
    ce = smoothed_cross_entropy(logits, batch["targets"], label_smoothing)
    correct = (jnp.argmax(logits, axis=-1) == batch["targets"]).astype(jnp.float32)
    return {
        "loss_sum": jnp.sum(ce * weights),
        "correct_sum": jnp.sum(correct * weights),
        "weight_sum": jnp.sum(weights),
    }


def scored_count(sums: dict):
    """The number of Part B targets that sums are divided by (the official loss normalization), at least 1."""
    return jnp.maximum(sums["weight_sum"], 1.0)
