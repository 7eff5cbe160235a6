"""TensorFlow as the data side uses it: on the host CPU only, never claiming an accelerator JAX needs.

Data modules import `tf` from here, so that the first of them to load hides the GPUs from TensorFlow
before it runs an op; the package itself (`glm_jax.data`) loads no TensorFlow.
"""

import tensorflow as tf

tf.config.set_visible_devices([], "GPU")
