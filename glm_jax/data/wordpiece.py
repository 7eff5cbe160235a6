"""BERT WordPiece vocabulary (GLM-Base/Large) as a `seqio.Vocabulary` that encodes inside TF graphs.

Id layout, as in the official GLM `BertWordPieceTokenizer` (N = lines in vocab.txt, 30,522 for
bert-base-uncased):

    [PAD] = pad = eos, [UNK], [CLS], [SEP], [MASK]   their line numbers in vocab.txt (0, 100..103)
    sop N, eop N+1, [gMASK] N+2, [sMASK] N+3, [dBLOCK] N+4   appended; vocab_size = N + 5

Encoding follows BERT's basic + WordPiece tokenization (the HuggingFace `BertWordPieceTokenizer`
settings): control characters removed, whitespace normalized, lower-cased with accents stripped
(`lower_case=True`), split on whitespace, punctuation and CJK characters, greedy longest-match
WordPiece, a word of more than 100 characters or with no WordPiece split becomes `[UNK]`. Ordinary
text never yields a command token other than `[UNK]`: literal `[MASK]`, `[CLS]`, ... in the text
are split like any punctuation and word, as in Google's original BERT (HuggingFace matches them as
special tokens instead), so a corpus cannot plant a blank marker in Part A.

Decoding joins words with single spaces and glues `##` continuations to the word before; it drops
`[PAD]` (= eos) and writes every other id, command tokens included, as its piece string:

    tokens "[CLS]", "hello", ",", "world", "##s", sop, "[PAD]"    (ids 101, ..., 30522, 0 for bert-base-uncased)
    text   "[CLS] hello , worlds <|startofpiece|>"

so decode(encode(text)) is the lower-cased text with accents stripped and words and punctuation
separated by single spaces. A leading `##` piece is written without its `##`.
"""

import functools
import hashlib
import types

import seqio
import tensorflow_text as tf_text

from glm_jax.contract import CommandTokens
from glm_jax.data.command_tokens import PIECES, CommandTokenIds
from glm_jax.data.host_tf import tf
from glm_jax.data.traced_encoding import TracedEncoding

# Command tokens that vocab.txt holds, by name; then those appended after it, in id order.
_NAMED = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
_APPENDED = ("sop", "eop", "gmask", "smask", "dblock")

_SUFFIX = "##"
_MAX_CHARS_PER_WORD = 100
# Other (C*) characters except tab, newline and carriage return, and U+FFFD: removed before splitting.
_CONTROL = r"[^\P{C}\t\n\r]|\x{FFFD}"
_WHITESPACE = r"[\t\n\r\p{Z}]"
# After cleaning, words are split at spaces (dropped) and around punctuation and CJK characters (kept).
_PUNCTUATION_OR_CJK = (
    r"[!-/:-@\[-`{-~\p{P}\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}"
    r"\x{2B740}-\x{2B81F}\x{2B820}-\x{2CEAF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}]"
)


class BertVocabulary(TracedEncoding, CommandTokenIds, seqio.Vocabulary):
    """WordPiece vocabulary from a BERT `vocab.txt` plus GLM's appended command tokens."""

    def __init__(self, vocab_txt_path: str, lower_case: bool = True):
        with tf.io.gfile.GFile(vocab_txt_path, "rb") as f:
            data = f.read()
        self._md5 = hashlib.md5(data).hexdigest()
        self._lower_case = lower_case
        self._tokens = [line.rstrip() for line in data.decode("utf-8").rstrip("\n").split("\n")]
        token_ids = {token: i for i, token in enumerate(self._tokens)}
        missing = [piece for piece in _NAMED.values() if piece not in token_ids]
        if missing:
            raise ValueError(f"{vocab_txt_path} lacks the command tokens {missing}.")
        named = {name: token_ids[piece] for name, piece in _NAMED.items()}
        appended = {name: len(self._tokens) + k for k, name in enumerate(_APPENDED)}
        self._command_tokens = CommandTokens(eos=named["pad"], **named, **appended)

        pieces = self._tokens + [PIECES[name] for name in _APPENDED]
        continues = [
            i < len(self._tokens) and len(p) > len(_SUFFIX) and p.startswith(_SUFFIX) for i, p in enumerate(pieces)
        ]
        texts = [p[len(_SUFFIX) :] if c else p for p, c in zip(pieces, continues, strict=True)]
        texts[self.pad_id] = ""
        self._piece_texts = texts
        # What each id adds to decoded text: a space and its text, or only its text for a `##` continuation.
        self._rendered = [t if c or not t else " " + t for t, c in zip(texts, continues, strict=True)]
        super().__init__(extra_ids=0)

    @property
    def _base_vocab_size(self) -> int:
        return len(self._piece_texts)

    def piece_texts(self) -> list[str]:
        """Surface text of each id in decoded text: the token without `##`; "" for [PAD]."""
        return list(self._piece_texts)

    @functools.cached_property
    def _tf(self) -> types.SimpleNamespace:
        """TF resources, built on first use outside any graph so that every graph can capture them."""
        with tf.init_scope():
            table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(self._tokens), tf.range(len(self._tokens), dtype=tf.int64)
                ),
                default_value=-1,
            )
            wordpiece = tf_text.WordpieceTokenizer(
                table,
                suffix_indicator=_SUFFIX,
                max_bytes_per_word=4 * _MAX_CHARS_PER_WORD,  # the real limit, in characters, is applied before
                unknown_token=_NAMED["unk"],
            )
            rendered = tf.constant(self._rendered)
            encode = tf.function(self._tokenize_tf, input_signature=[tf.TensorSpec([], tf.string)])
        return types.SimpleNamespace(wordpiece=wordpiece, rendered=rendered, encode=encode)

    def _normalize_tf(self, text: tf.Tensor) -> tf.Tensor:
        text = tf.strings.regex_replace(text, _CONTROL, "")
        text = tf.strings.regex_replace(text, _WHITESPACE, " ")
        if self._lower_case:
            text = tf.strings.lower(text, encoding="utf-8")
            text = tf_text.normalize_utf8(text, "NFD")
            text = tf.strings.regex_replace(text, r"\p{Mn}", "")
        return text

    def _tokenize_tf(self, s: tf.Tensor) -> tf.Tensor:
        """Scalar tf.string -> int32 [num_tokens], no eos added."""
        text = self._normalize_tf(tf.reshape(s, [1]))
        words = tf_text.regex_split(text, " +|" + _PUNCTUATION_OR_CJK, _PUNCTUATION_OR_CJK).flat_values
        too_long = tf.strings.length(words, unit="UTF8_CHAR") > _MAX_CHARS_PER_WORD
        words = tf.where(too_long, _NAMED["unk"], words)
        return tf.cast(self._tf.wordpiece.tokenize(words).flat_values, tf.int32)

    def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
        """int [..., length] -> tf.string [...]."""
        text = tf.strings.reduce_join(tf.gather(self._tf.rendered, ids), axis=-1)
        return tf.strings.regex_replace(text, "^ ", "")

    def _decode(self, ids) -> str:
        return "".join(self._rendered[i] for i in ids).removeprefix(" ")

    def __getstate__(self) -> dict:
        """Picklable (Gin deep-copies configurables' arguments): TF resources are rebuilt on first use."""
        return {key: value for key, value in self.__dict__.items() if key != "_tf"}

    def __eq__(self, other) -> bool:
        return isinstance(other, BertVocabulary) and (self._md5, self._lower_case) == (other._md5, other._lower_case)

    def __hash__(self) -> int:
        return hash((self._md5, self._lower_case))
