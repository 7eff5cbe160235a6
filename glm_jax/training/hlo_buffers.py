"""The buffers of a compiled (or lowered) step whose size grows with the row length squared: `[.., L, L]`
attention scores or masks, `[.., L, V]` logits. Read from the HLO text, so any backend's program can be checked."""

import dataclasses
import math
import re

# An array type in HLO text, e.g. `f32[4,16,8192,8192]{3,2,1,0}` or `pred[8192,8192]`.
_HLO_SHAPE = re.compile(r"\b([a-z][a-z0-9]*)\[(\d+(?:,\d+)*)\]")


@dataclasses.dataclass(frozen=True)
class QuadraticBuffers:
    """Array types of an HLO module that grow with L² or L x V (each type once, largest first)."""

    length_by_length: tuple[str, ...]  # two axes of L
    length_by_vocab: tuple[str, ...]  # an axis of L (or a multiple) and one of the vocabulary (or a shard of it)


def quadratic_buffers(
    hlo_text: str, seq_len: int, vocab_rows: int, vocab_shards: int = 1, model_sizes=()
) -> QuadraticBuffers:
    """The array types in `hlo_text` (a compiled or lowered module's text) quadratic in the row length.

    `[.., L, L]`: two axes of exactly `seq_len` (scores `[B, heads, L, L]`, a mask `[B, 1, L, L]`).
    `[.., L, V]`: an axis of `vocab_rows` or `vocab_rows / vocab_shards` (logits split over a tensor
    axis) and one of `seq_len`, or of a multiple of it that is none of `model_sizes` (e.g. hidden,
    4 x hidden): `[B, L, V]`, or `[B * L, V]` flattened, but not a `[V, hidden]` embedding. Shapes
    alone decide, so L must differ from the model's other sizes and from 128
    (the splash kernel broadcasts segment ids and its logsumexp over 128 lanes). Every array
    type in the text is read, those inside fusions too: a quadratic array that a fusion never
    writes out still shows the program computes one.
    """
    vocab = {vocab_rows, vocab_rows // max(vocab_shards, 1)}
    not_length = vocab | set(model_sizes)
    is_length = lambda d: d == seq_len or (d > 0 and d % seq_len == 0 and d not in not_length)  # noqa: E731
    by_length, by_vocab = {}, {}
    for dtype, dims_text in _HLO_SHAPE.findall(hlo_text):
        dims = [int(d) for d in dims_text.split(",")]
        name, size = f"{dtype}[{dims_text}]", math.prod(dims)
        if dims.count(seq_len) >= 2:
            by_length[name] = size
        elif any(d in vocab for d in dims) and any(is_length(d) for d in dims):
            by_vocab[name] = size
    largest_first = lambda found: tuple(sorted(found, key=lambda n: (-found[n], n)))  # noqa: E731
    return QuadraticBuffers(largest_first(by_length), largest_first(by_vocab))
