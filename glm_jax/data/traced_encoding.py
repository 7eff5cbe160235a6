"""Encoding through one traced TF tokenizer graph, for vocabularies whose tokenizer is TF ops."""

from glm_jax.data.host_tf import tf


class TracedEncoding:
    """Mixin for a `seqio.Vocabulary` whose `_tf.encode` is a `tf.function` of its tokenizer
    (`_tokenize_tf`, scalar tf.string -> int32 ids): the graph is traced once and called from
    Python and from any TF graph (a tf.data map, a cloze piece) alike."""

    def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
        """Scalar tf.string -> int32 [num_tokens], no eos added."""
        return self._tf.encode(tf.reshape(s, []))

    def _encode(self, s: str) -> list[int]:
        """Python str -> ids, eagerly even where it is called while a TF graph is traced (a tf.data
        map encoding a fixed prompt): `init_scope` lifts the call out of that graph."""
        with tf.init_scope():
            return self._tf.encode(tf.constant(s)).numpy().tolist()
