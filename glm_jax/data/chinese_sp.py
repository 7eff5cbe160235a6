"""The Chinese SentencePiece vocabulary (GLM-Large-Chinese, GLM-10B-Chinese) as a `seqio.Vocabulary`.

The released Chinese models tokenize with the SentencePiece model `cog-pretrain.model` (BPE, 50,000
pieces: `<unk>` 0, `<s>` 1, `</s>` 2, the user-defined `<n>` 3, then learned pieces) and put GLM's
command tokens after its pieces. Id layout, as in the official `ChineseSPTokenizer` (SwissArmyTransformer's
`tokenization/glm/tokenization.py`, which THUDM/GLM's scripts load as `glm_ChineseSPTokenizer`), with
block symbols, task masks and [dBLOCK] on, N = the number of pieces:

    <|endoftext|> = pad = eos N, [SEP] N+1, [CLS] N+2, [MASK] N+3, [UNK] N+4
    N+5 unused: after counting those five ids the official code places sop and eop one id further
    sop N+6, eop N+7, then, by the flag `fix_command_token`:
      fixed (glm-large-chinese; kind `glm-chinese`):       [sMASK] N+8, [gMASK] N+9, [dBLOCK] N+10
      unfixed (glm-10b-chinese; kind `glm-chinese-10b`):   [gMASK] N+7 (= eop), [sMASK] N+8, [dBLOCK] N+9
    vocab_size = [dBLOCK] + 1: 50,011 or 50,010; the checkpoints hold 50,048 embedding rows.

glm-10b-chinese was trained with [gMASK] and eop sharing one id (THUDM/GLM issue #55): the official
config of that model (`config_tasks/model_blocklm_10B_chinese.sh`) gives tokenizer model type `glm-10b`
and `--no-fix-command`, the one of glm-large-chinese type `glm-large`. Where two names share an id, decoding writes the
name the official tokenizer's id map keeps, the later one ([gMASK]).

Encoding is SentencePiece's own (NFKC normalization, whitespace runs and newlines become one space,
leading and trailing whitespace dropped), run by TF Text's SentencePiece op in one traced graph for
Python and TF alike. Characters outside the model become SentencePiece's `<unk>` (id 0), as in the
official code; the command token [UNK] (N+4) is never produced. Ordinary text never yields a command
token: the appended ids lie outside the model, and literal `[MASK]`, `<|endoftext|>`, ... in the text
are split into ordinary pieces (the official tokenizer would match them as command tokens), so a
corpus cannot plant a blank marker in Part A.

Decoding writes each run of text ids (from the start, or after a command token) as SentencePiece
decodes it alone, as the official tokenizer does: '▁' as a space, leading spaces of the run dropped,
`<unk>` as " ⁇ ", `<s>` and `</s>` as nothing. Command tokens are written as their piece strings,
except `<|endoftext|>` (= pad = eos) and the unused id, which write nothing; nothing is put between
runs and command tokens (the official `spaces_between_special_tokens` is off for these models):

    ids of "今天吃饭" (▁今天, 吃饭), [MASK], ids of "一个" (▁, 一个), eos  ->  "今天吃饭[MASK]一个"
"""

import functools
import hashlib
import types

import sentencepiece
import seqio
import tensorflow_text as tf_text

from glm_jax.contract import CommandTokens
from glm_jax.data.command_tokens import PIECES, CommandTokenIds
from glm_jax.data.host_tf import tf
from glm_jax.data.traced_encoding import TracedEncoding

_UNK_TEXT = "[UNK]"
_SPACE = "\u2581"
_UNK_SURFACE = " \u2047 "  # SentencePiece's text for an unknown piece


def official_ids(num_pieces: int, fix_command_token: bool = True) -> dict[str, int]:
    """Command-token ids of the official `ChineseSPTokenizer` (block symbols, task masks and [dBLOCK] on),
    in the order it defines them; a later name wins an id two names share."""
    n = num_pieces
    ids = {"pad": n, "eos": n, "sep": n + 1, "cls": n + 2, "mask": n + 3, "unk": n + 4}
    counted = n + 5  # the five ids above; sop and eop go one further
    ids["sop"], ids["eop"] = counted + 1, counted + 2
    counted += 3 if fix_command_token else 2
    first, second = ("smask", "gmask") if fix_command_token else ("gmask", "smask")
    ids[first], ids[second] = counted, counted + 1
    ids["dblock"] = counted + 2
    return ids


class ChineseSPVocabulary(TracedEncoding, CommandTokenIds, seqio.Vocabulary):
    """`cog-pretrain.model` (or any SentencePiece model) plus GLM's command tokens appended as officially."""

    def __init__(self, model_path: str, fix_command_token: bool = True):
        with tf.io.gfile.GFile(model_path, "rb") as f:
            self._model = f.read()
        self._md5 = hashlib.md5(self._model).hexdigest()
        self._fix_command_token = fix_command_token
        try:
            processor = sentencepiece.SentencePieceProcessor(model_proto=self._model)
        except RuntimeError as e:
            raise ValueError(f"{model_path} is not a SentencePiece model: {e}") from None
        num_pieces = processor.get_piece_size()

        ids = official_ids(num_pieces, fix_command_token)
        self._command_tokens = CommandTokens(**ids)
        texts = []
        for i in range(num_pieces):
            if processor.is_control(i):
                texts.append("")
            elif processor.is_unknown(i):
                texts.append(_UNK_SURFACE)
            else:
                texts.append(processor.id_to_piece(i).replace(_SPACE, " "))
        texts += [""] * (max(ids.values()) + 1 - num_pieces)
        names = {**PIECES, "pad": "", "eos": "", "unk": _UNK_TEXT}
        for name, token_id in ids.items():  # in the official order: a later name wins a shared id
            texts[token_id] = names[name]
        self._piece_texts = texts
        # A run of text ids is decoded alone: SentencePiece drops its leading spaces, not <unk>'s.
        self._num_pieces = num_pieces
        self._run_start_texts = [
            text.lstrip(" ") if i < num_pieces and i != processor.unk_id() else text for i, text in enumerate(texts)
        ]
        super().__init__(extra_ids=0)

    @property
    def _base_vocab_size(self) -> int:
        return len(self._piece_texts)

    def piece_texts(self) -> list[str]:
        """Text of each id in decoded text: '▁' as a space; "" for <s>, </s>, <|endoftext|> and the unused id."""
        return list(self._piece_texts)

    @functools.cached_property
    def _tf(self) -> types.SimpleNamespace:
        """TF resources, built on first use outside any graph so that every graph can capture them."""
        with tf.init_scope():
            tokenizer = tf_text.SentencepieceTokenizer(model=self._model, out_type=tf.int32)
            texts = tf.constant(self._piece_texts)
            run_start_texts = tf.constant(self._run_start_texts)
            writes_at_start = tf.constant([bool(text) for text in self._run_start_texts])
            encode = tf.function(self._tokenize_tf, input_signature=[tf.TensorSpec([], tf.string)])
        return types.SimpleNamespace(
            tokenizer=tokenizer,
            texts=texts,
            run_start_texts=run_start_texts,
            writes_at_start=writes_at_start,
            encode=encode,
        )

    def _tokenize_tf(self, s: tf.Tensor) -> tf.Tensor:
        """Scalar tf.string -> int32 [num_tokens], no eos added."""
        return self._tf.tokenizer.tokenize(tf.reshape(s, [1])).flat_values

    def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
        """int [..., length] -> tf.string [...]."""
        length = tf.shape(ids)[-1]
        rows = tf.reshape(ids, [-1, length])
        command = rows >= self._num_pieces
        writes = ~command & tf.gather(self._tf.writes_at_start, rows)
        # A position starts its run if no id since the last command token (or the start) wrote text.
        run = tf.cumsum(tf.cast(command, tf.int32), axis=1, exclusive=True)
        run += tf.range(tf.shape(rows)[0])[:, None] * (length + 1)
        written = tf.cumsum(tf.cast(writes, tf.int32), axis=1, exclusive=True)
        at_run_start = tf.math.unsorted_segment_min(written, run, tf.size(rows) + tf.shape(rows)[0])
        starts = tf.gather(at_run_start, run) == written
        texts = tf.where(starts, tf.gather(self._tf.run_start_texts, rows), tf.gather(self._tf.texts, rows))
        return tf.reshape(tf.strings.reduce_join(texts, axis=-1), tf.shape(ids)[:-1])

    def _decode(self, ids) -> str:
        texts, start = [], True
        for i in ids:
            text = self._run_start_texts[i] if start else self._piece_texts[i]
            texts.append(text)
            start = i >= self._num_pieces or (start and not text)
        return "".join(texts)

    def __getstate__(self) -> dict:
        """Picklable (Gin deep-copies configurables' arguments): TF resources are rebuilt on first use."""
        return {key: value for key, value in self.__dict__.items() if key != "_tf"}

    def __eq__(self, other) -> bool:
        return isinstance(other, ChineseSPVocabulary) and (self._md5, self._fix_command_token) == (
            other._md5,
            other._fix_command_token,
        )

    def __hash__(self) -> int:
        return hash((self._md5, self._fix_command_token))
