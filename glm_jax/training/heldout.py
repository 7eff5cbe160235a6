"""Held-out loss of the training objective over fixed batches, and the unigram baseline of the same targets."""

import jax
import numpy as np

from glm_jax.training import losses


def evaluate(trainer, params, batches) -> dict:
    """Part B loss and token accuracy summed over `batches` (host batches of contract fields)."""
    totals = None
    for batch in batches:
        sums = trainer.eval_step(params, trainer.device_batch(batch))
        totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
    count = losses.scored_count(totals)
    return {"eval_loss": float(totals["loss_sum"] / count), "eval_accuracy": float(totals["correct_sum"] / count)}


def unigram_counts(batches, vocab_size: int) -> np.ndarray:
    """How often each id is a scored target in `batches`."""
    counts = np.zeros(vocab_size, np.float64)
    for batch in batches:
        np.add.at(counts, batch["targets"].ravel(), batch["loss_weights"].ravel().astype(np.float64))
    return counts


def unigram_cross_entropy(counts: np.ndarray, batches) -> float:
    """Cross-entropy (nats) of the scored targets of `batches` under add-one smoothed `counts`."""
    log_p = np.log((counts + 1.0) / (counts.sum() + len(counts)))
    total, weight = 0.0, 0.0
    for batch in batches:
        w = batch["loss_weights"].astype(np.float64)
        total -= float((log_p[batch["targets"]] * w).sum())
        weight += float(w.sum())
    return total / max(weight, 1.0)
