"""Part B cross-entropy and accuracy, as sums so that they add up over batches and devices."""

import jax.numpy as jnp
import optax


def scored_sums(logits, batch) -> dict:
    """Sums over scored positions: cross-entropy, correct argmax, and the weight itself."""
    weights = batch["loss_weights"].astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
    correct = (jnp.argmax(logits, axis=-1) == batch["targets"]).astype(jnp.float32)
    return {
        "loss_sum": jnp.sum(ce * weights),
        "correct_sum": jnp.sum(correct * weights),
        "weight_sum": jnp.sum(weights),
    }


def scored_count(sums: dict):
    """The number of Part B targets that sums are divided by (the official loss normalization), at least 1."""
    return jnp.maximum(sums["weight_sum"], 1.0)
