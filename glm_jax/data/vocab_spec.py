"""A vocabulary named by one string, for configs (`data.vocabulary`) and command lines.

spm:/path/model.model                    any SentencePiece model holding GLM's command pieces
wordpiece:/path/vocab.txt                BERT WordPiece (GLM-Base/Large), lower-cased
wordpiece-cased:/path/vocab.txt          the same, case kept
bpe:/path/vocab.json,/path/merges.txt    GPT-2 BPE (GLM-RoBERTa/2B/10B)
default                                  the shipped SentencePiece model
"""

import functools

import seqio
import tensorflow as tf

from glm_jax.data import bpe, vocab, wordpiece

KINDS = ("default", "spm", "wordpiece", "wordpiece-cased", "bpe")


@functools.cache
def from_spec(spec: str) -> seqio.Vocabulary:
    kind, _, paths = spec.partition(":")
    if kind == "default" and not paths:
        return vocab.default_vocabulary()
    parts = paths.split(",") if paths else []
    expected = {"spm": 1, "wordpiece": 1, "wordpiece-cased": 1, "bpe": 2}.get(kind)
    if expected is None or len(parts) != expected:
        raise ValueError(
            f"Vocabulary {spec!r} is not understood; use one of: spm:MODEL, wordpiece:VOCAB_TXT, "
            "wordpiece-cased:VOCAB_TXT, bpe:VOCAB_JSON,MERGES_TXT, default."
        )
    missing = [path for path in parts if not tf.io.gfile.exists(path)]
    if missing:
        raise ValueError(f"Vocabulary {spec!r}: {', '.join(missing)} not found.")
    if kind == "spm":
        return vocab.GLMSentencePieceVocabulary(parts[0])
    if kind == "bpe":
        return bpe.GPT2Vocabulary(*parts)
    return wordpiece.BertVocabulary(parts[0], lower_case=kind == "wordpiece")
