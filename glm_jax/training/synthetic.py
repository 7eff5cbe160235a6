"""Synthetic batches with a real blank-infilling layout, for benchmarks and compile-only runs."""

import numpy as np

from glm_jax.contract import CommandTokens

# Ids of the shipped SentencePiece vocabulary; any layout-consistent choice works.
TOKENS = CommandTokens(pad=0, eos=1, unk=2, cls=3, sep=4, mask=5, smask=6, gmask=7, sop=8, eop=9, dblock=10)


def synthetic_batch(batch: int, seq_len: int, vocab_size: int, rng: np.random.Generator) -> dict:
    """Rows of 85% Part A with one blank, then one Part B span filling it (random token ids)."""
    part_a = int(seq_len * 0.85)
    inputs = rng.integers(11, vocab_size, (batch, seq_len), dtype=np.int32)
    inputs[:, part_a // 2] = TOKENS.mask
    inputs[:, part_a] = TOKENS.sop
    scored = np.arange(seq_len) >= part_a
    return {
        "inputs": inputs,
        "targets": rng.integers(11, vocab_size, (batch, seq_len), dtype=np.int32),
        "loss_weights": np.broadcast_to(scored, (batch, seq_len)).astype(np.int32),
        "segment_ids": np.ones((batch, seq_len), np.int32),
        "span_ids": np.broadcast_to(scored, (batch, seq_len)).astype(np.int32),
    }


def synthetic_pairs(batch: int, seq_len: int) -> int:
    """Query-key pairs the mask allows in a `synthetic_batch`: Part A squared, Part B causal."""
    part_a = int(seq_len * 0.85)
    part_b = seq_len - part_a
    return batch * (part_a * part_a + part_b * part_a + part_b * (part_b + 1) // 2)
