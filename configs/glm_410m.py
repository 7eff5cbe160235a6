"""GLM-410M (paper): 30 layers, hidden 1024, 16 heads; 410M parameters with the BERT vocabulary.

Trained like GLM-Doc (configs/glm_doc.py: short spans .5 + document .5, the Large optimizer recipe).
"""

from glm_jax.config import sibling_config


def get_config():
    c = sibling_config(__file__, "glm_doc")
    c.model.num_layers = 30
    return c
