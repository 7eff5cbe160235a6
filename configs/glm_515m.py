"""GLM-515M (paper): 30 layers, hidden 1152, 18 heads; 515M parameters with the BERT vocabulary.

Trained like GLM-Doc (configs/glm_doc.py: short spans .5 + document .5, the Large optimizer recipe).
"""

from glm_jax.config import sibling_config


def get_config():
    c = sibling_config(__file__, "glm_410m")
    c.model.hidden = 1152
    c.model.heads = 18
    return c
