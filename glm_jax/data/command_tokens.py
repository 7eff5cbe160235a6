"""GLM's command tokens: the names every vocabulary must provide, and their ids.

A vocabulary of this project maps each name in `PIECES` to one id. For the shipped SentencePiece
model the ids are fixed at training time (`scripts/train_vocab.py`): pad 0, eos 1, unk 2, then
the pieces below in order from 3.
"""

import dataclasses

# Piece strings as in the official GLM tokenizers.
PIECES = {
    "cls": "[CLS]",
    "sep": "[SEP]",
    "mask": "[MASK]",
    "smask": "[sMASK]",
    "gmask": "[gMASK]",
    "sop": "<|startofpiece|>",
    "eop": "<|endofpiece|>",
    "dblock": "[dBLOCK]",
}


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


class CommandTokenIds:
    """Mixin for a `seqio.Vocabulary` whose special ids come from its `CommandTokens` (`_command_tokens`)."""

    _command_tokens: CommandTokens

    @property
    def command_tokens(self) -> CommandTokens:
        return self._command_tokens

    @property
    def pad_id(self) -> int:
        return self._command_tokens.pad

    @property
    def eos_id(self) -> int:
        return self._command_tokens.eos

    @property
    def unk_id(self) -> int:
        return self._command_tokens.unk
