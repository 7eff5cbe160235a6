"""Batches in the official GLM format turned into the data contract (`glm_jax/contract.py`), checked exactly.

The official code feeds a block-LM batch as `tokens [B, L]`, `position_ids [B, 2, L]` (positions,
block positions) and `sep [B]` (its `attention_mask` argument: the length of Part A), each example
alone in its row and right-padded: Part A is `tokens[:sep]` (position ids `0..sep-1`), Part B
follows (each span `sop` + tokens, its position id that of the blank marker it fills, its block
position id 1, 2, ... from `sop`), then padding. The official mask lets query q see key k when
`k < sep or k <= q`; padding comes last, so it never changes a real token's output.

Where padding starts is not part of the official batch. `lengths` gives it; without it, an example
is `max(sep, 1 + the last position whose token is not pad_id)` long: Part A always counts in full,
and only trailing pad ids after it are padding (a Part B input never ends in pad_id, which is also
GLM's eos with the BERT vocabulary, unless generated text does; pass `lengths` then).

    contract = to_contract(tokens, position_ids, sep, command_tokens.blank_markers)
    logits = GLM(config).apply({"params": params}, contract)   # == the official logits at real tokens
"""

import numpy as np

from glm_jax.model.layout import layout


def to_contract(
    tokens,
    position_ids,
    sep,
    blank_markers,
    *,
    lengths=None,
    pad_id: int = 0,
    targets=None,
    loss_mask=None,
) -> dict[str, np.ndarray]:
    """Contract fields (`inputs`, `segment_ids`, `span_ids`; `targets`, `loss_weights` if `targets` is given).

    Args:
      tokens: `[B, L]` token ids. position_ids: `[B, 2, L]`. sep: `[B]` Part A lengths.
      blank_markers: the ids of [MASK], [sMASK], [gMASK] (`CommandTokens.blank_markers`).
      lengths: optional `[B]` real lengths (Part A + Part B); default: see the module docstring.
      pad_id: the padding token, for finding the lengths.
      targets: optional official `target_ids [B, L]` (what each position predicts, as in the contract).
      loss_mask: optional official `loss_mask [B, L]`; default 1 on every real Part B position.

    Raises ValueError naming the example and position where the batch is not a consistent GLM batch:
    a Part B position id that is not a blank marker of Part A, or positions or block positions that
    differ from what the contract implies (`glm_jax.model.layout`).
    """
    tokens = np.asarray(tokens, np.int32)
    position_ids = np.asarray(position_ids, np.int64)
    sep = np.asarray(sep, np.int64).reshape(-1)
    batch, length = tokens.shape
    if position_ids.shape != (batch, 2, length) or sep.shape != (batch,):
        raise ValueError(
            f"Expected position_ids [B, 2, L] and sep [B] for tokens {tokens.shape}; got "
            f"{position_ids.shape} and {sep.shape}."
        )
    if np.any(sep < 1) or np.any(sep > length):
        raise ValueError(f"sep must be in 1..{length} (the length of Part A); got {sep.tolist()}.")
    lengths = _lengths(tokens, sep, pad_id) if lengths is None else np.asarray(lengths, np.int64).reshape(-1)
    if lengths.shape != (batch,) or np.any(lengths < sep) or np.any(lengths > length):
        raise ValueError(f"lengths must be [B] with sep <= length <= {length}; got {lengths.tolist()}.")

    index = np.arange(length)
    real = index[None, :] < lengths[:, None]
    part_b = real & (index[None, :] >= sep[:, None])
    is_marker = np.isin(tokens, np.asarray(blank_markers)) & (index[None, :] < sep[:, None])
    rank = np.cumsum(is_marker, axis=1) * is_marker  # 1, 2, ... at the markers of Part A, else 0
    span_ids = np.zeros((batch, length), np.int32)
    for b, t in zip(*np.nonzero(part_b), strict=True):
        p = position_ids[b, 0, t]
        if not (0 <= p < sep[b] and is_marker[b, p]):
            raise ValueError(
                f"Example {b}, position {t} (Part B): its position id {p} is not a blank marker of Part A "
                f"(sep={sep[b]})."
            )
        span_ids[b, t] = rank[b, p]

    contract = {"inputs": tokens, "segment_ids": real.astype(np.int32), "span_ids": span_ids}
    _check_layout(contract, position_ids, blank_markers)
    if targets is not None:
        contract["targets"] = np.where(real, np.asarray(targets, np.int32), 0).astype(np.int32)
        weights = part_b if loss_mask is None else np.asarray(loss_mask) * real
        contract["loss_weights"] = np.asarray(weights, np.int32 if loss_mask is None else np.float32)
    return contract


def _lengths(tokens: np.ndarray, sep: np.ndarray, pad_id: int) -> np.ndarray:
    length = tokens.shape[1]
    not_pad = tokens != pad_id
    last = np.where(not_pad.any(axis=1), length - np.argmax(not_pad[:, ::-1], axis=1), 0)  # 1 + last non-pad
    return np.maximum(sep, last)


def _check_layout(contract: dict, position_ids: np.ndarray, blank_markers) -> None:
    derived = layout(contract, tuple(blank_markers))
    real = contract["segment_ids"] > 0
    checks = (("position", derived.positions), ("block position", derived.block_positions))
    for dim, (name, values) in enumerate(checks):
        wrong = np.argwhere(real & (np.asarray(values) != position_ids[:, dim]))
        if len(wrong):
            b, t = wrong[0]
            raise ValueError(
                f"Example {b}, position {t}: official {name} id {position_ids[b, dim, t]}, but the contract "
                f"implies {int(np.asarray(values)[b, t])}: not a batch of one GLM example per row "
                "(Part A at positions 0..sep-1, each Part B span sop-first at its blank marker's position)."
            )
