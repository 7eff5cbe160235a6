"""`data.eval_batches` in fine-tuning: each kind reads only the first batches' examples of the evaluation split,
and they are the same examples, laid out the same, as the first batches of the whole split."""

import numpy as np
import pytest
from conftest import ROOT

from glm_jax import config as config_lib
from glm_jax import workdir as workdir_lib
from glm_jax.downstream import finetuning_job


def demo_batches(name: str, eval_batches: int) -> list:
    c = config_lib.load_config_file(ROOT / f"configs/finetune/{name}.py")
    c.data.update(batch_size=4, eval_batches=eval_batches)
    return finetuning_job.KINDS[c.finetune.kind](c, workdir_lib.model_vocabulary(c)).eval_data()


def same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    return a == b


@pytest.mark.parametrize("name", ["demo_choice", "demo_choice_classify", "demo_summary", "demo_infill"])
def test_first_batches_of_the_whole_split(name):
    whole, first = demo_batches(name, 0), demo_batches(name, 2)
    assert len(whole) > 2 and len(first) == 2
    assert all(same(a, b) for a, b in zip(first, whole[:2], strict=True))
