"""Task examples → fixed-length model rows of the data contract (`glm_jax/contract.py`), padded or packed."""

import seqio

from glm_jax.contract import CONTRACT_FIELDS, TASK_FIELDS
from glm_jax.data.host_tf import tf


class GLMFeatureConverter(seqio.FeatureConverter):
    """Pads each example to L (segment 1, padding 0), or with `pack=True` packs several per row.

    Packing is greedy in order, one example after another while they fit; the examples of a row
    get segment ids 1, 2, ... . SeqIO's packing measures a feature by its non-zero entries, so every
    field is shifted by +1 around it and shifted back after, which keeps the zeros of Part A
    `targets`, `loss_weights` and `span_ids` (and an eos id of 0) intact. Example, L = 8, packed:

        {'inputs': [3 5 8 9], ...}, {'inputs': [3 7 8], ...}
          →  inputs [3 5 8 9 3 7 8 0], segment_ids [1 1 1 1 2 2 2 0]
    """

    TASK_FEATURES = {name: seqio.FeatureConverter.FeatureSpec(dtype=tf.int32) for name in TASK_FIELDS}
    MODEL_FEATURES = {name: seqio.FeatureConverter.FeatureSpec(dtype=tf.int32) for name in CONTRACT_FIELDS}
    PACKING_FEATURE_DTYPES = {}

    def __init__(self, pack: bool = False, **kwargs):
        super().__init__(pack=pack, **kwargs)

    def _convert_features(self, ds, task_feature_lengths):
        length = task_feature_lengths["inputs"]
        if not self.pack:
            return ds.map(
                lambda ex: {**{k: ex[k] for k in TASK_FIELDS}, "segment_ids": tf.ones_like(ex["inputs"])},
                num_parallel_calls=tf.data.AUTOTUNE,
            ).apply(lambda d: seqio.utils.trim_and_pad_dataset(d, dict.fromkeys(CONTRACT_FIELDS, length)))

        shifted = ds.map(lambda ex: {k: ex[k] + 1 for k in TASK_FIELDS}, num_parallel_calls=tf.data.AUTOTUNE)
        packed = seqio.utils.trim_and_pack_dataset(shifted, dict.fromkeys(TASK_FIELDS, length))

        def unshift(ex):
            segments = ex["inputs_segment_ids"]
            real = segments > 0
            return {**{k: tf.where(real, ex[k] - 1, 0) for k in TASK_FIELDS}, "segment_ids": segments}

        return packed.map(unshift, num_parallel_calls=tf.data.AUTOTUNE)

    def get_model_feature_lengths(self, task_feature_lengths):
        return dict.fromkeys(CONTRACT_FIELDS, task_feature_lengths["inputs"])
