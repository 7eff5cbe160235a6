"""Vocabularies: the shipped SentencePiece model, command-token ids and sentence ends of any vocabulary.

A vocabulary of this project is a `seqio.Vocabulary` that also offers `command_tokens`
(`CommandTokens`) and `piece_texts()` (the surface text of each id). `GLMSentencePieceVocabulary`
adds them to any SentencePiece model; `wordpiece.BertVocabulary`, `bpe.GPT2Vocabulary` and
`chinese_sp.ChineseSPVocabulary` to the BERT, GPT-2 and Chinese SentencePiece vocabularies of the
official GLM models.
"""

import dataclasses
import functools
import pathlib

import numpy as np
import seqio

from glm_jax.contract import CommandTokens
from glm_jax.data.command_tokens import PIECES
from glm_jax.data.objectives import VocabInfo

DEFAULT_SPM_PATH = str(pathlib.Path(__file__).parent / "assets" / "default_spm.model")
# A token ends a sentence if its text ends with one of these (official GLM's list, with CJK forms).
SENTENCE_END_CHARS = (".", "?", "!", ";", ":", "…", "。", "？", "！", "；", "：", "\n")


class GLMSentencePieceVocabulary(seqio.SentencePieceVocabulary):
    """Any SentencePiece model that holds GLM's command tokens as pieces (see scripts/train_vocab.py)."""

    @functools.cached_property
    def command_tokens(self) -> CommandTokens:
        processor = self.tokenizer
        ids = {}
        for name, piece in PIECES.items():
            token_id = processor.piece_to_id(piece)
            if token_id == processor.unk_id():
                raise ValueError(
                    f"Vocabulary {self.sentencepiece_model_file} has no piece {piece!r} for command token "
                    f"{name!r}; train it with that user-defined symbol (see scripts/train_vocab.py)."
                )
            ids[name] = token_id
        return CommandTokens(pad=self.pad_id, eos=self.eos_id, unk=self.unk_id, **ids)

    def piece_texts(self) -> list[str]:
        """Each piece as text: '▁' is a space, a byte-fallback piece `<0x0A>` its (Latin-1) character."""
        processor = self.tokenizer

        def text(i):
            piece = processor.id_to_piece(i)
            return chr(int(piece[3:5], 16)) if processor.is_byte(i) else piece.replace("▁", " ")

        return [text(i) for i in range(processor.get_piece_size())]


@functools.cache
def default_vocabulary() -> GLMSentencePieceVocabulary:
    """SentencePiece model trained on the default corpus (`scripts/train_vocab.py`), 8,000 pieces."""
    return GLMSentencePieceVocabulary(DEFAULT_SPM_PATH)


def command_tokens(vocabulary: seqio.Vocabulary) -> CommandTokens:
    if not hasattr(vocabulary, "command_tokens"):
        raise ValueError(
            f"{type(vocabulary).__name__} has no GLM command tokens; use GLMSentencePieceVocabulary, "
            "wordpiece.BertVocabulary, bpe.GPT2Vocabulary or chinese_sp.ChineseSPVocabulary."
        )
    return vocabulary.command_tokens


def vocab_info(vocabulary: seqio.Vocabulary) -> VocabInfo:
    """Command tokens and the `[vocab_size]` table of sentence-ending tokens."""
    tokens = command_tokens(vocabulary)
    ends = np.array([text.rstrip(" ").endswith(SENTENCE_END_CHARS) for text in vocabulary.piece_texts()], bool)
    ends = np.pad(ends, (0, max(0, vocabulary.vocab_size - len(ends))))
    ends[[getattr(tokens, field.name) for field in dataclasses.fields(tokens)]] = False
    return VocabInfo(tokens=tokens, sentence_ends=ends, vocab_size=vocabulary.vocab_size)
