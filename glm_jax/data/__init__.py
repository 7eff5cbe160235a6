"""Data side: tasks, vocabularies, blank infilling and batching (TensorFlow on the host CPU)."""

import tensorflow as tf

# The data pipeline runs on the host: TensorFlow must never claim an accelerator JAX needs.
tf.config.set_visible_devices([], "GPU")
