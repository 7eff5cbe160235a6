"""GLM-10B (configs/glm_10b.py) on rows of 2048 tokens, position tables sized to match.

The 10B shape and recipe with data.seq_len = model.max_len = 2048 (the release's tables hold 1025
rows: a converted checkpoint needs its position tables extended), bfloat16 compute, full
rematerialization, and no attention dropout, so that model.attention='auto' picks the splash kernel
on TPU. Meant for a pod slice with the parameters and optimizer state sharded, e.g. 64 v5p chips:

    python -m glm_jax.compile --config configs/glm_10b_2k.py --topology v5p:4x4x4 \
        --config.mesh.fsdp=64 --config.data.batch_size=320 --compare_attention

(5 rows of 2048 per chip: 655k tokens a step, the 10B recipe's 21 rows of 512 per chip being 688k).
data.batch_size is global: a multiple of the devices it is split over.
"""

from glm_jax.config import sibling_config

SEQ_LEN = 2048


def get_config():
    c = sibling_config(__file__, "glm_10b")
    c.data.seq_len = SEQ_LEN
    c.model.max_len = SEQ_LEN
    c.model.dtype = "bfloat16"
    c.model.remat = "full"
    c.model.attention_dropout = 0.0
    return c
