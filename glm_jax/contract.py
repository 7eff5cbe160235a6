"""The data contract (docs/data.md): the one interface between the data side and the model.

Every batch the model sees is a dict of int32 `[B, L]` arrays named in `CONTRACT_FIELDS`; a task
emits the `TASK_FIELDS` of each example (`segment_ids` come from padding or packing). The command
tokens are the ids the objectives, the layout and the decoder refer to. Plain Python: the data
side, the model and the engine all import this module, and it imports nothing.
"""

import dataclasses

CONTRACT_FIELDS = ("inputs", "targets", "loss_weights", "segment_ids", "span_ids")
# The rows of a batch are split over these mesh axes (the rest of each array is whole on a device).
BATCH_AXES = ("data", "fsdp")
TASK_FIELDS = ("inputs", "targets", "loss_weights", "span_ids")


@dataclasses.dataclass(frozen=True)
class CommandTokens:
    """Ids of the tokens the objectives, the layout and the decoder refer to."""

    pad: int
    eos: int
    unk: int
    cls: int
    sep: int
    mask: int
    smask: int
    gmask: int
    sop: int
    eop: int
    dblock: int

    @property
    def blank_markers(self) -> tuple[int, int, int]:
        """Tokens that open a blank in Part A: [MASK], [sMASK], [gMASK]."""
        return (self.mask, self.smask, self.gmask)


def sentinel_tokens(vocab_size: int, i: int) -> tuple[int, int]:
    """Ids of [MASK{i}] and sop{i} (i >= 1), the sentinel tokens of the paper's ablation: pairs after
    a vocabulary's `vocab_size` ids, as the official tokenizer appends them (`add_sentinel_token`).
    Span i of Part B (i = 0: [MASK] and sop themselves) uses pair i."""
    return vocab_size + 2 * (i - 1), vocab_size + 2 * i - 1


def sentinel_rows(max_len: int) -> int:
    """Embedding rows the sentinel tokens take, i = 1 .. max_len - 1 as the official tokenizer adds them."""
    return 2 * (max_len - 1)
