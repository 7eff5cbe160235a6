"""The trainer of a classifier: the transformer's parameters and the head's (`params["classifier"]`)."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from glm_jax.downstream.classify.model import HEAD, Objective
from glm_jax.training.trainer import Trainer


class ClassifierTrainer(Trainer):
    """`Trainer` whose parameters also hold the classifier head of `objective`. A pretrained (--init)
    checkpoint has the transformer's only (`new_params`): `state_from_params` then adds a fresh head,
    drawn from `train.seed`, as the official head starts from PyTorch's initialization."""

    new_params = (HEAD,)

    def __init__(self, config, glm_config, mesh, objective: Objective, max_scored: int | None = None):
        self.head = objective.head(glm_config)
        super().__init__(config, glm_config, mesh, objective, max_scored)

    def head_params(self, rng):
        """Fresh (boxed) head parameters."""
        return self.head.init(rng, jnp.zeros((1, self.glm_config.hidden), jnp.float32))["params"]

    def _init_boxed(self, rng):
        transformer, head = jax.random.split(rng)
        state = super()._init_boxed(transformer)
        params = state.params | {HEAD: self.head_params(head)}
        return state.replace(params=params, opt_state=self.optimizer.init(params))

    def state_from_params(self, params):
        if HEAD not in params:
            params = params | {HEAD: nn.unbox(self.head_params(jax.random.key(self.config.train.seed)))}
        return super().state_from_params(params)
