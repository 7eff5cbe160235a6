"""GLM-Large (configs/glm_large.py) on rows of 8192 tokens, position tables sized to match.

The Large shape, data and optimizer recipe, with data.seq_len = model.max_len = 8192 (both
position tables hold 8193 rows, trained from scratch). Attention dropout is 0, so that
model.attention='auto' picks the splash kernel on TPU: the xla attention builds the `[B, 1, L, L]`
mask and `[B, heads, L, L]` scores (8192² per head and row), which at this length decide whether a
step fits; `python -m glm_jax.compile --config configs/glm_large_8k.py --topology v5p:2x2x1
--compare_attention` prints both paths' memory. The global batch stays 16 rows (131k tokens a step).
"""

from glm_jax.config import sibling_config

SEQ_LEN = 8192


def get_config():
    c = sibling_config(__file__, "glm_large")
    c.data.seq_len = SEQ_LEN
    c.model.max_len = SEQ_LEN
    c.model.attention_dropout = 0.0
    return c
