"""GPT-2 byte-level BPE (GLM-RoBERTa/2B/10B) as a `seqio.Vocabulary` that encodes inside TF graphs.

Id layout, as in the official GLM `GPT2BPETokenizer` (N = entries of vocab.json, 50,257 for GPT-2):

    <|endoftext|> = pad = eos                                      its id in vocab.json (50256)
    sop N, eop N+1, [CLS] N+2, [MASK] N+3, [SEP] N+4, [UNK] N+5,
    [gMASK] N+6, [sMASK] N+7, [dBLOCK] N+8                         appended; vocab_size = N + 9

Encoding is GPT-2's, written with TF ops: the text is split with GPT-2's pattern (contractions,
letters, digits, other symbols, each with at most one leading space; whitespace runs give all but
their last character to a run of their own), each piece's bytes become GPT-2's printable byte
symbols, and merges.txt is applied by rank (lowest first, leftmost on ties) until none applies.
Ordinary text never yields a command token: the appended ids lie outside vocab.json, and the
pre-tokenizer always splits the text `<|endoftext|>` into several pieces.

    "Hello  world\\n" -> pieces "Hello", " ", " world", "\\n" -> e.g. "Hello", "Ġ", "Ġworld", "Ċ"

Decoding concatenates the bytes of each id and reads them as UTF-8 (invalid bytes become U+FFFD);
it drops `<|endoftext|>` (= pad = eos) and writes each appended id as its piece string.
"""

import functools
import hashlib
import json
import types

import seqio
import tensorflow_text as tf_text

from glm_jax.contract import CommandTokens
from glm_jax.data.command_tokens import PIECES, CommandTokenIds
from glm_jax.data.host_tf import tf
from glm_jax.data.traced_encoding import TracedEncoding

_END_OF_TEXT = "<|endoftext|>"
_APPENDED = ("sop", "eop", "cls", "mask", "sep", "unk", "gmask", "smask", "dblock")
_APPENDED_TEXT = {**PIECES, "unk": "[UNK]"}
_NO_MERGE = tf.int64.max

# Unicode White_Space in RE2 syntax (RE2's \s is ASCII only).
_SPACE = r"\t\n\x0B\f\r\x{85}\p{Z}"
# GPT-2's pattern without its look-ahead alternative `\s+(?!\S)`, which `_pretokenize_tf` emulates.
_PIECE = rf"'s|'t|'re|'ve|'m|'ll|'d| ?\p{{L}}+| ?\p{{N}}+| ?[^{_SPACE}\p{{L}}\p{{N}}]+|[{_SPACE}]+"


def byte_symbols() -> list[str]:
    """GPT-2's printable stand-in for each byte: the byte's own character if printable, else U+0100, U+0101, ..."""
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)}
    others = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(others)) for b in range(256)]


class GPT2Vocabulary(TracedEncoding, CommandTokenIds, seqio.Vocabulary):
    """Byte-level BPE from GPT-2's vocab.json and merges.txt plus GLM's appended command tokens."""

    def __init__(self, vocab_json_path: str, merges_txt_path: str):
        with tf.io.gfile.GFile(vocab_json_path, "rb") as f:
            vocab_data = f.read()
        with tf.io.gfile.GFile(merges_txt_path, "rb") as f:
            merges_data = f.read()
        self._md5 = hashlib.md5(vocab_data + b"\0" + merges_data).hexdigest()
        vocab = json.loads(vocab_data)
        if sorted(vocab.values()) != list(range(len(vocab))):
            raise ValueError(f"{vocab_json_path}: ids are not 0..{len(vocab) - 1}.")
        self._symbols = sorted(vocab, key=vocab.get)
        missing = [s for s in [_END_OF_TEXT, *byte_symbols()] if s not in vocab]
        if missing:
            raise ValueError(f"{vocab_json_path} lacks {missing}.")
        lines = merges_data.decode("utf-8").split("\n")
        self._merges = [line for k, line in enumerate(lines) if line and not (k == 0 and line.startswith("#version"))]
        bad = [line for line in self._merges if len(line.split(" ")) != 2]
        if bad:
            raise ValueError(f"{merges_txt_path}: lines not of the form 'left right': {bad[:3]}.")

        n = len(self._symbols)
        end_of_text = vocab[_END_OF_TEXT]
        appended = {name: n + k for k, name in enumerate(_APPENDED)}
        self._command_tokens = CommandTokens(pad=end_of_text, eos=end_of_text, **appended)

        byte_of = {symbol: bytes([b]) for b, symbol in enumerate(byte_symbols())}
        self._piece_bytes = [b"".join(byte_of.get(c) or c.encode() for c in s) for s in self._symbols]
        self._piece_bytes += [_APPENDED_TEXT[name].encode() for name in _APPENDED]
        self._piece_bytes[end_of_text] = b""
        super().__init__(extra_ids=0)

    @property
    def _base_vocab_size(self) -> int:
        return len(self._piece_bytes)

    def piece_texts(self) -> list[str]:
        """Surface text of each id: its bytes as UTF-8 (U+FFFD for a partial character); "" for <|endoftext|>."""
        return [piece.decode("utf-8", errors="replace") for piece in self._piece_bytes]

    @functools.cached_property
    def _tf(self) -> types.SimpleNamespace:
        """TF resources, built on first use outside any graph so that every graph can capture them."""
        with tf.init_scope():
            ranks = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(self._merges, tf.string), tf.range(len(self._merges), dtype=tf.int64)
                ),
                default_value=_NO_MERGE,
            )
            ids = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(self._symbols), tf.range(len(self._symbols), dtype=tf.int64)
                ),
                default_value=self.unk_id,
            )
            byte_to_symbol = tf.constant(byte_symbols())
            piece_bytes = tf.constant(self._piece_bytes)
            encode = tf.function(self._tokenize_tf, input_signature=[tf.TensorSpec([], tf.string)])
        return types.SimpleNamespace(
            ranks=ranks, ids=ids, byte_to_symbol=byte_to_symbol, piece_bytes=piece_bytes, encode=encode
        )

    def _tokenize_tf(self, s: tf.Tensor) -> tf.Tensor:
        """Scalar tf.string -> int32 [num_tokens], no eos added."""
        words, index = tf.unique(_pretokenize_tf(tf.reshape(s, [1])))
        word_bytes = tf.strings.bytes_split(words)
        byte_values = tf.reshape(tf.io.decode_raw(word_bytes.flat_values, tf.uint8), [-1])
        symbols = tf.gather(self._tf.byte_to_symbol, tf.cast(byte_values, tf.int32))
        symbols, word_ids = self._merge_tf(symbols, word_bytes.value_rowids(), tf.size(words, tf.int64))
        ids = tf.RaggedTensor.from_value_rowids(self._tf.ids.lookup(symbols), word_ids, nrows=tf.size(words, tf.int64))
        return tf.cast(tf.gather(ids, index).flat_values, tf.int32)

    def _merge_tf(self, symbols: tf.Tensor, word_ids: tf.Tensor, num_words: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Merges pairs of adjacent symbols of a word, one pair per word per step, until none has a rank.

        symbols [T] and word_ids [T] (non-decreasing) list the symbols of all words in order. Each step
        merges, in every word, the leftmost occurrence of the word's lowest-ranked pair, as GPT-2 does.
        """

        def step(symbols, word_ids, _):
            left, right = symbols[:-1], symbols[1:]
            pair_word = word_ids[:-1]
            ranks = self._tf.ranks.lookup(tf.strings.join([left, right], separator=" "))
            ranks = tf.where(tf.equal(pair_word, word_ids[1:]), ranks, _NO_MERGE)
            lowest = tf.gather(tf.math.unsorted_segment_min(ranks, pair_word, num_words), pair_word)
            candidate = (ranks == lowest) & (ranks != _NO_MERGE)
            position = tf.range(tf.size(ranks, tf.int64))
            first = tf.math.unsorted_segment_min(tf.where(candidate, position, _NO_MERGE), pair_word, num_words)
            merge = candidate & (position == tf.gather(first, pair_word))
            merged = tf.concat([tf.where(merge, tf.strings.join([left, right]), left), symbols[-1:]], 0)
            keep = tf.concat([[True], ~merge], 0)
            return tf.boolean_mask(merged, keep), tf.boolean_mask(word_ids, keep), tf.reduce_any(merge)

        symbols, word_ids, _ = tf.while_loop(
            lambda symbols, word_ids, more: more,
            step,
            (symbols, word_ids, tf.size(symbols) > 1),
            shape_invariants=(tf.TensorShape([None]), tf.TensorShape([None]), tf.TensorShape([])),
        )
        return symbols, word_ids

    def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
        """int [..., length] -> tf.string [...]."""
        text = tf.strings.reduce_join(tf.gather(self._tf.piece_bytes, ids), axis=-1)
        return tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)

    def _decode(self, ids) -> str:
        return b"".join(self._piece_bytes[i] for i in ids).decode("utf-8", errors="replace")

    def __getstate__(self) -> dict:
        """Picklable (Gin deep-copies configurables' arguments): TF resources are rebuilt on first use."""
        return {key: value for key, value in self.__dict__.items() if key != "_tf"}

    def __eq__(self, other) -> bool:
        return isinstance(other, GPT2Vocabulary) and self._md5 == other._md5

    def __hash__(self) -> int:
        return hash(self._md5)


def _pretokenize_tf(text: tf.Tensor) -> tf.Tensor:
    """tf.string [1] -> the pieces GPT-2's pattern splits it into, [num_pieces].

    RE2 has no look-ahead, so whitespace is handled first: the text is cut into runs of whitespace
    and of other characters. A whitespace run before other text yields all but its last character
    as one piece; its last character is a piece of its own, or, if it is a space, the leading space
    of the next piece. A run at the end of the text stays whole.

        "a  b\\n\\nc " -> runs "a", "  ", "b", "\\n\\n", "c", " " -> "a", " ", " b", "\\n", "\\n", "c", " "
    """
    runs = tf_text.regex_split(text, f"[{_SPACE}]+", f"[{_SPACE}]+").flat_values
    is_space = tf.strings.regex_full_match(runs, f"[{_SPACE}]+")
    is_last = tf.range(tf.size(runs)) == tf.size(runs) - 1
    head = tf.strings.regex_replace(runs, f"[{_SPACE}]$", "")
    tail = tf.strings.substr(runs, tf.strings.length(head), tf.strings.length(runs) - tf.strings.length(head))
    gives_space = is_space & ~is_last & tf.equal(tail, " ")
    takes_space = tf.concat([[False], gives_space[:-1]], 0)
    first = tf.where(is_space, tf.where(is_last, runs, head), tf.where(takes_space, tf.strings.join([" ", runs]), runs))
    second = tf.where(is_space & ~is_last & ~gives_space, tail, "")
    pieces = tf.reshape(tf.stack([first, second], axis=1), [-1])
    pieces = tf.boolean_mask(pieces, tf.strings.length(pieces) > 0)
    return tf_text.regex_split(pieces, _PIECE, _PIECE).flat_values
