"""The official fine-tuning and decoding recipes of the seq2seq datasets (`config_tasks/seq_*.sh`)."""

import dataclasses

from glm_jax import config as config_lib

DATASETS = ("cnn_dailymail", "xsum", "gigaword", "squad_qg")
BLANK = "blank"  # text infilling (the official --task blank): blanks.py, blank_texts.py


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Official fine-tuning and decoding settings of a dataset.

    `batch_size` is the script's `--batch-size`, which the official `scripts/ds_finetune_seq2seq.sh` gives to
    each GPU (DeepSpeed over NUM_WORKERS=2 x NUM_GPUS_PER_WORKER=8, so 16x that in all); glm_jax's
    `data.batch_size` is global. All scripts use linear decay, warmup 0.06, weight decay 0.1 and label smoothing
    0.1 (`--lr-decay-style linear --warmup 0.06 --weight-decay 1.0e-1 --label-smoothing 0.1`); decoding is
    beam search keeping the top 2*beams candidates (`--select-topk`).
    """

    source_len: int  # --src-seq-length
    target_len: int  # --tgt-seq-length (target tokens + eop; also the most decoding steps)
    lr: float  # --lr
    epochs: int  # --epochs
    batch_size: int  # --batch-size (per GPU)
    num_beams: int  # --num-beams
    length_penalty: float  # --length-penalty
    no_repeat_ngram_size: int = 0  # --no-repeat-ngram-size (official default 0: off)
    min_target_len: int = 0  # --min-tgt-length (official default 0)
    metric: str = "rouge"
    lr_decay: str = "linear"
    warmup: float = 0.06
    weight_decay: float = 0.1
    label_smoothing: float = 0.1


SEQ2SEQ_RECIPES = {
    # config_tasks/seq_cnndm.sh (lr, epochs, batch size) and seq_cnndm_org.sh (the README's script for the
    # untokenized data; the same task args: --src-seq-length 608 --tgt-seq-length 160 --min-tgt-length 55
    # --length-penalty 0.7 --no-repeat-ngram-size 3 --num-beams 5). seq_cnndm_org.sh's own train args vary
    # over its versions (--lr 1e-5, --epochs 10 / --batch-size 8 or --epochs 20 / --batch-size 16).
    "cnn_dailymail": Recipe(
        source_len=608,
        target_len=160,
        lr=3e-5,  # seq_cnndm.sh --lr 3e-5
        epochs=15,  # seq_cnndm.sh --epochs 15
        batch_size=8,  # seq_cnndm.sh --batch-size 8
        num_beams=5,
        length_penalty=0.7,
        no_repeat_ngram_size=3,
        min_target_len=55,
    ),
    # config_tasks/seq_xsum.sh
    "xsum": Recipe(
        source_len=608,  # --src-seq-length 608
        target_len=60,  # --tgt-seq-length 60
        lr=1e-5,  # --lr 1e-5
        epochs=6,  # --epochs 6
        batch_size=8,  # --batch-size 8
        num_beams=6,  # --num-beams 6
        length_penalty=1.0,  # --length-penalty 1.0
        no_repeat_ngram_size=3,  # --no-repeat-ngram-size 3
        min_target_len=10,  # --min-tgt-length 10
    ),
    # config_tasks/seq_gigaword.sh
    "gigaword": Recipe(
        source_len=192,  # --src-seq-length 192
        target_len=32,  # --tgt-seq-length 32
        lr=3e-5,  # --lr 3e-5
        epochs=10,  # --epochs 10
        batch_size=16,  # --batch-size 16
        num_beams=5,  # --num-beams 5
        length_penalty=0.6,  # --length-penalty 0.6
        no_repeat_ngram_size=3,  # --no-repeat-ngram-size 3
        min_target_len=0,  # --min-tgt-length 0
    ),
    # config_tasks/seq_squad_generation.sh (no --no-repeat-ngram-size). The official in-training metric of every
    # seq2seq task is ROUGE (tasks/seq2seq/finetune.py); QG is reported in BLEU-4 on the written hypotheses.
    "squad_qg": Recipe(
        source_len=464,  # --src-seq-length 464
        target_len=48,  # --tgt-seq-length 48
        lr=2e-5,  # --lr 2e-5
        epochs=10,  # --epochs 10
        batch_size=8,  # --batch-size 8
        num_beams=5,  # --num-beams 5
        length_penalty=0.7,  # --length-penalty 0.7
        min_target_len=0,  # --min-tgt-length 0
        metric="bleu",
    ),
}


# config_tasks/seq_blank.sh with scripts/finetune_blank.sh (MASK_RATIO=0.1), the paper's Table 5. Its evaluation is
# greedy (the official BlankLMEvaluater ignores --num-beams) and its --tgt-seq-length 200 bounds the tokens of all
# blanks together; Part B's room in training is int(256 * ratio) tokens there, at most 128 (ratio 0.5) here.
BLANK_RECIPE = Recipe(
    source_len=256,  # --src-seq-length 256
    target_len=128,  # int(256 * 0.5): the official Part B room at the largest ratio of Table 5
    lr=1e-5,  # --lr 1e-5
    epochs=5,  # --epochs 5
    batch_size=16,  # --batch-size 16
    num_beams=1,  # greedy
    length_penalty=1.0,  # --length-penalty 1
    no_repeat_ngram_size=3,  # --no-repeat-ngram-size 3
    min_target_len=0,  # --min-tgt-length 0
    metric="bleu",
)


def recipe_config(dataset: str):
    """The fine-tuning config of `dataset` (or `BLANK`): its official recipe over `config.finetune_defaults()`."""
    recipes = SEQ2SEQ_RECIPES | {BLANK: BLANK_RECIPE}
    if dataset not in recipes:
        raise ValueError(f"Unknown seq2seq dataset {dataset!r}; known: {', '.join((*DATASETS, BLANK))}.")
    r = recipes[dataset]
    c = config_lib.finetune_defaults()
    c.finetune.update(
        kind="seq2seq", seq2seq=dataset, metric=r.metric, epochs=r.epochs, answer_len=r.target_len,
        num_beams=r.num_beams, length_penalty=r.length_penalty, no_repeat_ngram_size=r.no_repeat_ngram_size,
        min_target_len=r.min_target_len, label_smoothing=r.label_smoothing, pad_part_a=True,
    )  # fmt: skip
    c.data.update(seq_len=r.source_len + r.target_len, batch_size=r.batch_size)
    c.optimizer.update(peak_lr=r.lr, warmup_fraction=r.warmup, weight_decay=r.weight_decay)
    return c
