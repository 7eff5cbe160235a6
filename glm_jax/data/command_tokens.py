"""GLM's command tokens: the piece strings every vocabulary must provide (their ids: `contract.CommandTokens`).

A vocabulary of this project maps each name in `PIECES` to one id. For the shipped SentencePiece
model the ids are fixed at training time (`scripts/train_vocab.py`): pad 0, eos 1, unk 2, then
the pieces below in order from 3.
"""

from glm_jax.contract import CommandTokens

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
