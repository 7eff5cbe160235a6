"""Vocabularies: the shipped SentencePiece model and the command-token ids of any vocabulary."""

import functools
import pathlib

import seqio

from glm_jax.data.command_tokens import PIECES, CommandTokens

DEFAULT_SPM_PATH = str(pathlib.Path(__file__).parent / "assets" / "default_spm.model")


@functools.cache
def default_vocabulary() -> seqio.SentencePieceVocabulary:
    """SentencePiece model trained on the default corpus (`scripts/train_vocab.py`), 8,000 pieces."""
    return seqio.SentencePieceVocabulary(DEFAULT_SPM_PATH)


def command_tokens(vocab: seqio.SentencePieceVocabulary) -> CommandTokens:
    """Looks up GLM's command tokens in a SentencePiece vocabulary; fails if one is missing."""
    processor = vocab.tokenizer
    ids = {}
    for name, piece in PIECES.items():
        token_id = processor.piece_to_id(piece)
        if token_id == processor.unk_id():
            raise ValueError(
                f"Vocabulary {vocab.sentencepiece_model_file} has no piece {piece!r} for command token "
                f"{name!r}; train it with that user-defined symbol (see scripts/train_vocab.py)."
            )
        ids[name] = token_id
    return CommandTokens(pad=vocab.pad_id, eos=vocab.eos_id, unk=vocab.unk_id, **ids)
