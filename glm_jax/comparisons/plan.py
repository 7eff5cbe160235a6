"""What the small-scale reproduction runs: the variants (a config of configs/comparisons each), the
evaluations each takes, and the sizes of a full and a quick run.

Every variant is `configs/glm_tiny.py` (optimizer, corpus) with its own objective and position
scheme, at the shape and steps of the run's `Scale`, so all compare at equal parameters (up to the
block-position table and the sentinel rows), tokens and steps. Each pretrained model is then fine-tuned or scored:

- `cloze`: the cloze demo (configs/finetune/demo_choice.py) fine-tuned as a cloze, in the variant's
  own style: from the blank (GLM), as masks in place (BERT), left to right (GPT);
- `classify`: the same questions through the sequence classifier (GLM and BERT, as the paper's
  Table 6 "classification fine-tuning" rows);
- `summary`: the summary demo (ROUGE); `infill_0.1`, `infill_0.5`: the infilling demo at those
  ratios (BLEU; not for GPT, which sees no text after a blank);
- `perplexity`: zero-shot perplexity of the validation documents, unidirectional and bidirectional
  (GPT: unidirectional only; BERT: none, a masked LM predicts no next token).
"""

import dataclasses
import pathlib

import ml_collections

from glm_jax import config as config_lib

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"


EVALUATIONS = ("perplexity", "cloze", "classify", "summary", "infill_0.1", "infill_0.5")


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str  # also the config's file name in configs/comparisons
    label: str  # as the table and figure name it
    cloze_style: str = "glm"
    evaluations: tuple[str, ...] = ("perplexity", "cloze", "summary", "infill_0.1", "infill_0.5")

    def __post_init__(self):
        if unknown := set(self.evaluations) - set(EVALUATIONS):
            raise ValueError(f"Variant {self.name!r}: evaluations {sorted(unknown)} are not in {EVALUATIONS}.")


VARIANTS = (
    Variant("glm", "GLM", evaluations=("perplexity", "cloze", "classify", "summary", "infill_0.1", "infill_0.5")),
    Variant("no_shuffle", "GLM − shuffle"),
    Variant("sentinel", "GLM + sentinel"),
    Variant("no_block_position", "GLM − block pos."),
    Variant("glm_doc", "GLM-Doc"),
    Variant("bert", "BERT", "masked_lm", ("cloze", "classify", "summary", "infill_0.1", "infill_0.5")),
    Variant("gpt", "GPT", "left_to_right", ("perplexity", "cloze", "summary")),
)
EXTRA = (Variant("random_position", "GLM + random pos."),)  # not in the default set; --variants names it


@dataclasses.dataclass(frozen=True)
class Scale:
    """Sizes of a run. `finetune_steps` 0: each demo's `epochs`, else that many steps."""

    pretrain_steps: int
    pretrain_eval_batches: int
    cloze_epochs: int
    summary_epochs: int
    infill_epochs: int
    finetune_steps: int = 0
    finetune_eval_batches: int = 0  # 0: the whole validation split
    perplexity_documents: int = 0  # 0: every validation document
    model: tuple[tuple[str, object], ...] = ()  # overrides of glm_tiny's model (a smaller one)


# 7 variants x 3 seeds on 2 CPU cores. A job's fixed cost (tracing the input pipeline and the steps,
# compiling, evaluating, checkpoints: 20-90 s on the 12-03 VM) is most of a small job's time, so the
# model is made small (2 layers, 128 wide: 1.46M parameters, ~3 pretraining steps/s there) and the
# steps kept long enough to train something: 300 pretraining steps of 16 x 128, one epoch of each demo.
# The run's measured time is in benchmarks/README.md with its results.
FULL = Scale(pretrain_steps=300, pretrain_eval_batches=4, cloze_epochs=1, summary_epochs=1, infill_epochs=1,
             perplexity_documents=25, model=(("num_layers", 2), ("hidden", 128), ("heads", 4)))  # fmt: skip
QUICK = Scale(pretrain_steps=4, pretrain_eval_batches=1, cloze_epochs=1, summary_epochs=1, infill_epochs=1,
              finetune_steps=2, finetune_eval_batches=1, perplexity_documents=2,
              model=(("num_layers", 1), ("hidden", 32), ("heads", 2)))  # fmt: skip


def variant(name: str) -> Variant:
    for v in (*VARIANTS, *EXTRA):
        if v.name == name:
            return v
    names = ", ".join(v.name for v in (*VARIANTS, *EXTRA))
    raise ValueError(f"--variants: {name!r} is not a variant; the variants are {names}.")


def pretrain_config(v: Variant, seed: int, scale: Scale) -> ml_collections.ConfigDict:
    """The variant's pretraining config at `scale`, seeded."""
    c = config_lib.load_config_file(CONFIGS / "comparisons" / f"{v.name}.py")
    steps = scale.pretrain_steps
    c.train.update(seed=seed, steps=steps, eval_every=steps, checkpoint_every=steps, log_every=max(steps // 4, 1))
    c.data.update(eval_batches=scale.pretrain_eval_batches, unigram_batches=scale.pretrain_eval_batches)
    for key, value in scale.model:
        c.model[key] = value
    return c


def finetune_config(v: Variant, evaluation: str, seed: int, scale: Scale) -> ml_collections.ConfigDict:
    """The demo's fine-tuning config for `evaluation` (not perplexity), as the variant takes it."""
    name, ratio = evaluation.partition("_")[::2]
    file = {"cloze": "demo_choice", "classify": "demo_choice_classify", "summary": "demo_summary",
            "infill": "demo_infill"}[name]  # fmt: skip
    c = config_lib.load_config_file(CONFIGS / "finetune" / f"{file}.py")
    c.train.seed = seed
    epochs = {"cloze": scale.cloze_epochs, "classify": scale.cloze_epochs, "summary": scale.summary_epochs,
              "infill": scale.infill_epochs}[name]  # fmt: skip
    c.finetune.update(epochs=epochs, eval_every_epochs=epochs, steps=scale.finetune_steps)
    c.data.eval_batches = scale.finetune_eval_batches
    if name == "cloze":
        c.finetune.cloze_style = v.cloze_style
    if name == "summary":
        c.finetune.num_beams = 1  # greedy: the comparison, not the best summaries
    if name == "infill":
        c.finetune.blank_ratio = float(ratio)
    return c
