"""A vocabulary named by one string, for configs (`data.vocabulary`) and command lines.

spm:/path/model.model                    any SentencePiece model holding GLM's command pieces
wordpiece:/path/vocab.txt                BERT WordPiece (GLM-Base/Large), lower-cased
wordpiece-cased:/path/vocab.txt          the same, case kept
bpe:/path/vocab.json,/path/merges.txt    GPT-2 BPE (GLM-RoBERTa/2B/10B)
glm-chinese:/path/cog-pretrain.model     Chinese SentencePiece, command tokens as GLM-Large-Chinese's
glm-chinese-10b:/path/cog-pretrain.model the same as GLM-10B-Chinese's ([gMASK] shares eop's id)
default                                  the shipped SentencePiece model
"""

import functools

import seqio

from glm_jax.data import bpe, chinese_sp, vocab, wordpiece
from glm_jax.data.host_tf import tf

KINDS = ("default", "spm", "wordpiece", "wordpiece-cased", "bpe", "glm-chinese", "glm-chinese-10b")


@functools.cache
def from_spec(spec: str) -> seqio.Vocabulary:
    kind, _, paths = spec.partition(":")
    if kind == "default" and not paths:
        return vocab.default_vocabulary()
    parts = paths.split(",") if paths else []
    num_paths = {"spm": 1, "wordpiece": 1, "wordpiece-cased": 1, "bpe": 2, "glm-chinese": 1, "glm-chinese-10b": 1}
    expected = num_paths.get(kind)
    if expected is None or len(parts) != expected:
        raise ValueError(
            f"Vocabulary {spec!r} is not understood; use one of: spm:MODEL, wordpiece:VOCAB_TXT, "
            "wordpiece-cased:VOCAB_TXT, bpe:VOCAB_JSON,MERGES_TXT, glm-chinese:SPM_MODEL, glm-chinese-10b:SPM_MODEL, "
            "default."
        )
    missing = [path for path in parts if not tf.io.gfile.exists(path)]
    if missing:
        raise ValueError(f"Vocabulary {spec!r}: {', '.join(missing)} not found.")
    if kind == "spm":
        return vocab.GLMSentencePieceVocabulary(parts[0])
    if kind == "bpe":
        return bpe.GPT2Vocabulary(*parts)
    if kind in ("glm-chinese", "glm-chinese-10b"):
        return chinese_sp.ChineseSPVocabulary(parts[0], fix_command_token=kind == "glm-chinese")
    return wordpiece.BertVocabulary(parts[0], lower_case=kind == "wordpiece")
