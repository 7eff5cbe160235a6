"""Task examples → fixed-length model rows of the data contract (DESIGN.md)."""

import seqio
import tensorflow as tf

CONTRACT_FIELDS = ("inputs", "targets", "loss_weights", "segment_ids", "span_ids")
_TASK_FIELDS = ("inputs", "targets", "loss_weights", "span_ids")


class GLMFeatureConverter(seqio.FeatureConverter):
    """Pads each example to L and marks it as segment 1 (padding is segment 0).

    All task features share the length L of `task_feature_lengths['inputs']`.
    """

    TASK_FEATURES = {name: seqio.FeatureConverter.FeatureSpec(dtype=tf.int32) for name in _TASK_FIELDS}
    MODEL_FEATURES = {name: seqio.FeatureConverter.FeatureSpec(dtype=tf.int32) for name in CONTRACT_FIELDS}
    PACKING_FEATURE_DTYPES = None

    def __init__(self, **kwargs):
        if kwargs.pop("pack", False):
            raise NotImplementedError("Packing is not supported yet; use pack=False.")
        super().__init__(pack=False, **kwargs)

    def _convert_features(self, ds, task_feature_lengths):
        def add_segment(example):
            example = {name: example[name] for name in _TASK_FIELDS}
            example["segment_ids"] = tf.ones_like(example["inputs"])
            return example

        return self._pack_or_pad(
            ds.map(add_segment, num_parallel_calls=tf.data.AUTOTUNE),
            self.get_model_feature_lengths(task_feature_lengths),
        )

    def get_model_feature_lengths(self, task_feature_lengths):
        length = task_feature_lengths["inputs"]
        return {name: length for name in CONTRACT_FIELDS}
