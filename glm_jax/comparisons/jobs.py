"""One piece of the reproduction, run in this process: a variant's pretraining for one seed, or one
evaluation of the model it made. Each returns the scores recorded for it (`report` reads them)."""

import types

import flax.linen as nn
import jax
from etils import epath

from glm_jax import config as config_lib
from glm_jax import evaluate, pretraining
from glm_jax import workdir as workdir_lib
from glm_jax.comparisons import plan
from glm_jax.data import vocab
from glm_jax.downstream import finetuning_job
from glm_jax.model.glm import init_params


def workdir(root: str, v: plan.Variant, seed: int, job: str) -> str:
    return str(epath.Path(root) / v.name / f"seed{seed}" / job)


def parameter_count(path: str) -> int:
    """The parameters of the model of workdir `path`, from its config alone."""
    c = workdir_lib.read_config(path)
    vocabulary = workdir_lib.model_vocabulary(c)
    g = config_lib.model_config(c, vocabulary.vocab_size, vocab.command_tokens(vocabulary))
    shapes = jax.eval_shape(lambda: nn.unbox(init_params(g, jax.random.key(0), c.data.seq_len)))
    return sum(x.size for x in jax.tree.leaves(shapes))


def pretrain(root: str, v: plan.Variant, seed: int, scale: plan.Scale) -> dict:
    path = workdir(root, v, seed, "pretrain")
    final = pretraining.run(plan.pretrain_config(v, seed, scale), path)
    return {"eval_loss": final["eval_loss"], "eval_accuracy": final["eval_accuracy"],
            "parameters": parameter_count(path)}  # fmt: skip


def perplexity(root: str, v: plan.Variant, seed: int, scale: plan.Scale) -> dict:
    """Zero-shot perplexity of the validation documents in each setting the model has."""
    args = types.SimpleNamespace(
        workdir=workdir(root, v, seed, "pretrain"), source="default", split="validation", text_key="text",
        setting="both", window=0, stride=0, blank="mask", lambada=False, lambada_min_words=10,
        max_documents=scale.perplexity_documents, batch_size=0, compare_init=False,
    )  # fmt: skip
    (results,) = evaluate.run(args).values()
    return {key.replace("perplexity/", "ppl_"): value["perplexity"] for key, value in results.items()}


def finetune(root: str, v: plan.Variant, seed: int, scale: plan.Scale, evaluation: str) -> dict:
    c = plan.finetune_config(v, evaluation, seed, scale)
    return finetuning_job.run(c, workdir(root, v, seed, "pretrain"), workdir(root, v, seed, evaluation))


def run(root: str, v: plan.Variant, seed: int, scale: plan.Scale, job: str) -> dict:
    """The scores of `job` ("pretrain" or one of `plan.EVALUATIONS`) for variant `v` and `seed`."""
    if job == "pretrain":
        return pretrain(root, v, seed, scale)
    if job == "perplexity":
        return perplexity(root, v, seed, scale)
    return finetune(root, v, seed, scale, job)
