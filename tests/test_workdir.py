"""A workdir written from given parameters loads back the same arrays; missing pieces fail clearly."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from glm_jax import config as config_lib
from glm_jax import workdir
from glm_jax.model.glm import init_params


def small_config():
    c = config_lib.load_config_file("configs/glm_tiny.py")
    c.model.num_layers, c.model.hidden, c.model.heads = 2, 32, 2
    c.data.seq_len = 64
    return c


def test_write_then_load_round_trips(tmp_path):
    c = small_config()
    trainer, _ = workdir.trainer_for(c)
    params = jax.tree.map(np.asarray, nn.unbox(init_params(trainer.glm_config, jax.random.key(3), 64)))
    workdir.write(str(tmp_path / "w"), c, params)
    model = workdir.load(str(tmp_path / "w"))
    assert model.step == 0
    assert model.glm_config == trainer.glm_config
    jax.tree.map(np.testing.assert_array_equal, model.params, params)
    with pytest.raises(ValueError, match="already holds checkpoints"):
        workdir.write(str(tmp_path / "w"), c, params)


def test_load_names_what_is_missing(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        workdir.load(str(tmp_path))
    (tmp_path / "config.json").write_text(small_config().to_json())
    with pytest.raises(ValueError, match="holds no checkpoint"):
        workdir.load(str(tmp_path))
