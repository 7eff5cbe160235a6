"""Default configuration and its validation. Files in configs/ start from `base_config()`.

Every option has its default here; `validate` rejects impossible combinations with a message that
names the key, before anything is compiled or read.
"""

import importlib.util
import pathlib

import jax
import ml_collections
from absl import logging

from glm_jax.contract import CommandTokens, sentinel_rows
from glm_jax.model.glm import REMAT_POLICIES, GLMConfig
from glm_jax.model.layout import BLOCK_POSITIONS
from glm_jax.model.lora import TARGETS, LoRAConfig
from glm_jax.model.prompt import PROMPT_FUNCS, PromptConfig
from glm_jax.training import optim
from glm_jax.training.grow_embeddings import NEW_POSITIONS, NEW_ROWS

DEFAULT_TASK = "glm_default_short_spans"  # data.task: a built-in task of glm_jax.data.tasks
HOST_SPLITS = ("shard", "slice")  # data.host_split, see glm_jax.data.pipeline.host_batches
NONFINITE_ACTIONS = ("stop", "skip")  # train.on_nonfinite
ATTENTION = ("auto", "xla", "splash", "gpu_flash")  # model.attention


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()

    c.model = ml_collections.ConfigDict()
    c.model.vocab_size = 0  # 0: the task vocabulary's size, rounded up to a multiple of 128
    c.model.num_layers = 12
    c.model.hidden = 768
    c.model.heads = 12
    c.model.mlp_ratio = 4
    c.model.max_len = 0  # 0: data.seq_len
    c.model.dropout = 0.1
    c.model.attention_dropout = 0.1
    c.model.dtype = "float32"  # compute dtype: float32 or bfloat16 (parameters and optimizer stay float32)
    c.model.scan_layers = False  # scan one layer over stacked parameters (faster compiles for deep models)
    c.model.remat = "none"  # rematerialization: none | save_dots | full
    # xla: einsum + softmax over a dense [B, 1, L, L] mask (the reference, any device); splash: the
    # TPU splash kernel on the mask's O(L) form, no attention dropout (elsewhere: Pallas interpret
    # mode, slow, for tests); gpu_flash: NVIDIA GPU flash kernels (tokamax's Mosaic GPU kernels on
    # per-query key ranges, else cuDNN), bfloat16, no attention dropout (elsewhere: the kernel
    # library's XLA version, for tests); auto: splash on TPU, gpu_flash on GPU where they can run, else xla.
    c.model.attention = "auto"
    # Positions and mask, for the paper's comparisons (docs/comparisons.md); GLM's own by default.
    # span: 1, 2, .. in each Part B span; constant: 1 throughout (--no-block-position); none: no table (BERT, GPT)
    c.model.block_positions = "span"
    c.model.sentinel_positions = False  # Part B at position max_len (sentinel-token tasks; extra [MASK{i}]/sop{i} rows)
    c.model.causal = False  # the whole row left to right (GPT; left-to-right LM tasks)
    c.model.random_positions = False  # training examples start at random positions (--random-position)

    c.data = ml_collections.ConfigDict()
    c.data.task = DEFAULT_TASK
    c.data.task_module = ""  # a module to import first, to register user tasks
    c.data.vocabulary = ""  # "": the task's; else the model's own, e.g. wordpiece:vocab.txt (data/vocab_spec.py)
    c.data.batch_size = 16  # global, over all processes
    c.data.seq_len = 512
    c.data.host_split = "shard"  # shard: each host reads its own documents; slice: same stream for any host count
    c.data.pack = False  # pack several examples per row (for tasks whose examples are short)
    c.data.eval_split = "validation"
    c.data.eval_batches = 0  # 0: the whole evaluation split
    c.data.unigram_batches = 200  # training batches counted for the unigram baseline

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.peak_lr = 4e-4
    c.optimizer.schedule = "cosine"  # decay after warmup: cosine (pretraining) or linear (fine-tuning)
    c.optimizer.warmup_fraction = 0.05  # of decay_steps
    c.optimizer.decay_steps = 0  # 0: train.steps
    c.optimizer.end_lr_ratio = 0.05
    c.optimizer.b1 = 0.9
    c.optimizer.b2 = 0.98
    c.optimizer.eps = 1e-6
    c.optimizer.weight_decay = 0.1
    c.optimizer.clip_norm = 1.0

    c.train = ml_collections.ConfigDict()
    c.train.steps = 150_000
    c.train.seed = 0
    c.train.microbatches = 1  # gradient accumulation: the batch is split into this many slices
    c.train.log_every = 100
    c.train.eval_every = 5_000
    c.train.checkpoint_every = 5_000
    c.train.keep_checkpoints = 3
    c.train.peak_flops = 0.0  # per device, for MFU; 0: the known chip's peak, or a matmul measured on CPU
    # Logits only at the scored (Part B) positions, gathered into this many slots per row (rounded
    # up to a multiple of 8): -1 derives the most a row can hold from the objective (short spans:
    # 160 of 512, 72 of 128; document/sentence objectives, packed rows, unknown tasks: all positions);
    # 0 computes logits at every position. A batch row over it is an error naming this key.
    c.train.scored_capacity = -1
    # Where a row has more scored positions than this (document-level objectives, long rows),
    # their logits are computed this many at a time, recomputed in the backward pass: the
    # [B, L, vocab] float32 logits never exist at once. 0: all at once.
    c.train.logits_chunk = 1024
    # A step whose loss, gradient norm or update norm is not finite never changes the parameters;
    # then "stop" ends training (the last checkpoint stays the latest) and "skip" goes on, up to
    # train.max_skipped_steps such steps in a row.
    c.train.on_nonfinite = "stop"
    c.train.max_skipped_steps = 10
    # The parameters that train (glm_jax/training/trainable.py): all; auto (lora when lora.rank > 0, else all);
    # or a comma list of `lora` (the adapters) and globs over parameter paths (*/bias, classifier/*, layers_11/*).
    # A trainer's new parameters (a classifier head) always train. The rest is frozen: no gradient, no optimizer
    # state, and checkpoints hold the trainable ones only, with the checksums of the frozen base.
    c.train.trainable = "auto"

    # LoRA adapters (glm_jax/model/lora.py): y = x W + b + (alpha / rank) dropout(x) A B on the layers' projections.
    c.lora = ml_collections.ConfigDict()
    c.lora.rank = 0  # 0: no adapters
    c.lora.alpha = 16.0
    c.lora.dropout = 0.0  # on the adapters' inputs
    c.lora.targets = ",".join(TARGETS)  # a comma list of qkv, attention_out (dense), mlp_in (h_to_4h), mlp_out
    # Continuous prompts (P-tuning, glm_jax/model/prompt.py) as the official --continuous-prompt: prompt.tokens
    # (--num-prompt-tokens) spread over a pattern's prompt spots, prompt.prefix (--prefix-prompt) at the start of
    # Part A, each row's embeddings there from a PromptSpell of prompt.func (--prompt-func: lstm, mlp or none);
    # prompt.init (--prompt-init): the spell starts from word embeddings mixed with the verbalizer's (train.seed);
    # prompt.freeze_transformer (--freeze-transformer): train.trainable=auto trains the prompts (and a head, and
    # the first prompt.tune_prefix_layers layers, --tune-prefix-layers) only. See docs/finetuning.md, "P-tuning".
    c.prompt = ml_collections.ConfigDict()
    c.prompt.tokens = 0
    c.prompt.prefix = 0
    c.prompt.func = "lstm"
    c.prompt.init = False
    c.prompt.freeze_transformer = False
    c.prompt.tune_prefix_layers = 0
    # Continued pretraining (glm_jax.train --init DIR, see glm_jax/continued.py): DIR, set by --init and
    # recorded here; how rows DIR's tables lack start (glm_jax/training/grow_embeddings.py): new word rows
    # official (N(0, 0.02)) or mean (of DIR's token rows), new position rows copy, interpolate or official.
    c.train.init = ""
    c.train.init_new_rows = "official"
    c.train.init_new_positions = "copy"

    c.finetune = ml_collections.ConfigDict()  # python -m glm_jax.finetune; see glm_jax/downstream/finetuning_job.py
    # cloze: score answers in a blank (NLU); seq2seq: generate a target; classify: the official sequence
    # classifier (a head on a pooled hidden state; without --cloze-eval), see docs/finetuning.md
    c.finetune.kind = "cloze"
    c.finetune.task = ""  # a registered task of the kind (cloze/questions.py, seq2seq/layout.py, classify/rows.py)
    c.finetune.task_module = ""  # a module to import first, to register user cloze tasks
    c.finetune.superglue = ""  # or a SuperGLUE task to register: boolq cb copa multirc record rte wic wsc
    c.finetune.seq2seq = ""  # or a seq2seq dataset to register: cnn_dailymail xsum gigaword squad_qg, or blank
    c.finetune.source = "tfds"  # their data: tfds, or jsonl:DIR (superglue/tasks.py, seq2seq/datasets.py)
    # seq2seq=blank (text infilling, seq2seq/blank_texts.py): the share of each text's words blanked, and the
    # text's key in jsonl:DIR / feature in tfds:BUILDER sources (the source: demo, jsonl:DIR, tfds:.., blank_lm:DIR)
    c.finetune.blank_ratio = 0.1
    c.finetune.text_key = "text"
    c.finetune.pattern_id = -1  # SuperGLUE pattern; -1: the one the official task script uses
    c.finetune.metric = "accuracy"  # cloze: accuracy or a SuperGLUE task name; seq2seq: rouge or bleu
    c.finetune.epochs = 3  # 0: only evaluate the --init parameters (zero-shot)
    c.finetune.steps = 0  # > 0: train this many steps instead of `epochs` epochs (evaluating at the end too)
    c.finetune.eval_every_epochs = 1
    c.finetune.max_choices = 2  # answers (classify: choice rows) per question (more is an error, never a silent drop)
    c.finetune.max_train_choices = 0  # the same in training batches, if fewer (ReCoRD); 0: max_choices
    c.finetune.answer_len = 1  # tokens per answer (cloze; 1 for verbalizers) or target (seq2seq), eop included
    # cloze: glm scores each answer as Part B from the blank; masked_lm as one [MASK] per answer token in place of
    # the blank, predicted where they stand (the paper's "BERT (cloze)": fine-tune a masked-LM model so);
    # left_to_right: the answer in place, it and the rest of the row scored left to right (a GPT model's only style)
    c.finetune.cloze_style = "glm"
    c.finetune.length_penalty = 0.0  # answer score (cloze) or beam hypothesis score = log-prob / length ** penalty
    # The official --loss-func over a question's answer scores (cloze) or logits (classify): ce (or cross_entropy):
    # cross-entropy; hinge: sum of max(0, 1 + s_j - s_gold) over the other answers; generative: -s_gold (cloze:
    # the gold answer's log-prob / length ** length_penalty); mix: generative + ce (the WSC recipe).
    c.finetune.loss = "ce"
    c.finetune.pool_token = "cls"  # classify: the hidden state pooled, as --pool-token: cls, pad (the eos) or start
    c.finetune.train_split = "train"
    c.finetune.label_smoothing = 0.0  # seq2seq training loss
    c.finetune.num_beams = 1  # seq2seq decoding: 1 is greedy
    c.finetune.no_repeat_ngram_size = 0
    c.finetune.min_target_len = 0  # tokens before eop may end a target
    c.finetune.task_mask = False  # seq2seq blank [sMASK] instead of [MASK] (glm-10b and other task-mask models)
    # seq2seq: Part A padded with [PAD] to its full length (seq_len - answer_len), every token attending to the
    # pads, as the official Seq2SeqDataset lays it out (on in the official recipes; see docs/official_differences.md)
    c.finetune.pad_part_a = False
    c.finetune.from_scratch = False  # fresh parameters (train.seed) instead of --init's: a baseline

    c.distributed = ml_collections.ConfigDict()  # see glm_jax/training/distributed.py
    c.distributed.coordinator_address = ""  # host:port of process 0; empty: auto-detect (TPU pod, SLURM)
    c.distributed.num_processes = 0
    c.distributed.process_id = -1
    c.distributed.cpu_collectives = "gloo"  # cross-process collectives for CPU devices

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1  # -1: all devices left over by the other axes
    c.mesh.fsdp = 1
    c.mesh.tensor = 1
    return c


def finetune_defaults() -> ml_collections.ConfigDict:
    """Defaults for `python -m glm_jax.finetune`: the official fine-tuning recipe (AdamW β 0.9/0.999,
    ε 1e-8, weight decay 0.1, peak lr 1e-5, 10% linear warmup then linear decay to 10% of the peak,
    clipping 1.0, dropout 0.1). The model's shape comes from the --init workdir."""
    c = base_config()
    c.optimizer.update(
        peak_lr=1e-5, schedule="linear", warmup_fraction=0.1, end_lr_ratio=0.1, b1=0.9, b2=0.999, eps=1e-8
    )
    c.model.dropout = c.model.attention_dropout = 0.1
    c.data.batch_size = 16
    c.data.seq_len = 256
    c.train.log_every = 50
    c.train.keep_checkpoints = 2  # a damaged newest checkpoint falls back to the other
    c.train.checkpoint_every = 500  # and at every evaluation
    return c


def sibling_config(config_file: str, name: str) -> ml_collections.ConfigDict:
    """`get_config()` of configs/<name>.py next to `config_file`, for configs that extend another."""
    return load_config_file(pathlib.Path(config_file).with_name(f"{name}.py"))


def load_config_file(path: str | pathlib.Path) -> ml_collections.ConfigDict:
    """`get_config()` of a config file, e.g. `configs/glm_tiny.py`."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"Config file {path} does not exist; see configs/ for the shipped ones.")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _dropout_unfit(c: ml_collections.ConfigDict) -> str:
    """No fused attention kernel (splash, gpu_flash) has attention dropout."""
    if c.model.attention_dropout > 0.0:
        rate = c.model.attention_dropout
        return f"has no dropout on attention probabilities: set model.attention_dropout=0 (now {rate})"
    return ""


def _heads_unfit(c: ml_collections.ConfigDict) -> str:
    """A fused attention kernel runs per device on whole heads (`kernel_sharding`)."""
    if c.mesh.tensor > 0 and c.model.heads % c.mesh.tensor:
        return (
            f"splits the heads over mesh.tensor: make model.heads ({c.model.heads}) divisible by "
            f"mesh.tensor ({c.mesh.tensor})"
        )
    return ""


def splash_unfit(c: ml_collections.ConfigDict) -> str:
    """Why the splash attention cannot run config `c` ("" if it can): what to change."""
    seq_len = c.data.seq_len
    blocks = f"needs data.seq_len to be a multiple of 128, the kernel's block width (now {seq_len})"
    return _dropout_unfit(c) or (blocks if seq_len % 128 else "") or _heads_unfit(c)


def gpu_flash_unfit(c: ml_collections.ConfigDict) -> str:
    """Why the gpu_flash attention cannot run config `c` ("" if it can): what to change. These hold for
    both of its kernels (cuDNN's limits, which tokamax's Mosaic kernels meet too)."""
    dtype, seq_len, head_dim = c.model.dtype, c.data.seq_len, c.model.hidden // c.model.heads
    bf16 = f"multiplies in bfloat16 (its kernels take no float32): set model.dtype=bfloat16 (now {dtype})"
    width = f"needs model.hidden / model.heads to be a multiple of 8 and at most 128 (now {head_dim})"
    even = f"needs an even data.seq_len (cuDNN with a mask) (now {seq_len})"
    return (
        _dropout_unfit(c)
        or (bf16 if dtype != "bfloat16" else "")
        or (width if head_dim % 8 or head_dim > 128 else "")
        or (even if seq_len % 2 else "")
        or _heads_unfit(c)
    )


def gpu_flash_kernel(c: ml_collections.ConfigDict, compute_capability: float | None) -> str:
    """The kernel gpu_flash runs config `c` with on a GPU of `compute_capability` (None: off GPU, where
    the kernels' XLA versions run, chosen as on a Hopper GPU): tokamax's Mosaic kernels, which read
    the key ranges, on Hopper and Blackwell (9.x, 10.x) when data.seq_len is a multiple of 128; else
    cuDNN with the dense mask (saying why)."""
    if compute_capability is not None and not 9.0 <= compute_capability < 11.0:
        why = f"runs on compute capability 9.x and 10.x (Hopper, Blackwell), not {compute_capability}"
    elif c.data.seq_len % 128:
        why = f"needs data.seq_len to be a multiple of 128 (now {c.data.seq_len})"
    else:
        return "mosaic"
    logging.warning("model.attention=gpu_flash: cuDNN with the dense mask, as tokamax's Mosaic kernel %s.", why)
    return "cudnn"


# The fused path `auto` takes on each platform, and what says why it cannot run a config.
_FUSED = {"tpu": ("splash", splash_unfit), "gpu": ("gpu_flash", gpu_flash_unfit)}


def attention_path(c: ml_collections.ConfigDict, platform: str) -> str:
    """`model.attention` resolved for `platform` (cpu, gpu, tpu): auto is splash on TPU and gpu_flash
    on GPU where `splash_unfit` / `gpu_flash_unfit` find nothing against it, else xla (saying why)."""
    if c.model.attention != "auto":
        return c.model.attention
    if platform not in _FUSED:
        return "xla"
    path, unfit = _FUSED[platform]
    reason = unfit(c)
    if reason:
        logging.warning("model.attention=auto: using the xla attention, as %s %s.", path, reason)
        return "xla"
    return path


def max_len(c: ml_collections.ConfigDict) -> int:
    """The largest position of config `c`'s model: model.max_len, or data.seq_len where that is 0."""
    return c.model.max_len or c.data.seq_len


def embedding_rows(c: ml_collections.ConfigDict, vocab_size: int) -> tuple[int, int]:
    """(ids, rows) of config `c`'s model for a vocabulary of `vocab_size` ids: the token ids it uses (with
    model.sentinel_positions also [MASK{i}], sop{i} after the vocabulary's) and its word-embedding rows
    (model.vocab_size, or the ids rounded up to a multiple of 128)."""
    ids = vocab_size + (sentinel_rows(max_len(c)) if c.model.sentinel_positions else 0)
    rows = c.model.vocab_size or -(-ids // 128) * 128
    if rows < ids:
        raise ValueError(f"model.vocab_size={c.model.vocab_size} is smaller than the task vocabulary ({ids}).")
    return ids, rows


def model_config(
    c: ml_collections.ConfigDict, vocab_size: int, tokens: CommandTokens, platform: str | None = None
) -> GLMConfig:
    """The model of config `c` for a vocabulary of `vocab_size` ids (rows padded to 128), to run on
    `platform` (default: JAX's default backend; `glm_jax.compile` passes the topology's)."""
    m = c.model
    platform = platform or jax.default_backend()
    attention = attention_path(c, platform)
    return GLMConfig(
        vocab_size=embedding_rows(c, vocab_size)[1],
        num_layers=m.num_layers,
        hidden=m.hidden,
        heads=m.heads,
        max_len=max_len(c),
        blank_markers=tokens.blank_markers,
        mlp_ratio=m.mlp_ratio,
        dropout=m.dropout,
        attention_dropout=m.attention_dropout,
        dtype=m.dtype,
        scan_layers=m.scan_layers,
        remat=m.remat,
        attention=attention,
        splash_interpret=platform != "tpu",
        gpu_kernel=gpu_flash_kernel(c, _compute_capability(platform)) if attention == "gpu_flash" else "mosaic",
        gpu_reference=platform != "gpu",
        block_positions=m.block_positions,
        sentinel_positions=m.sentinel_positions,
        causal=m.causal,
        random_positions=m.random_positions,
        lora=lora_config(c),
        prompt=PromptConfig(length=c.prompt.tokens + c.prompt.prefix, func=c.prompt.func),
    )


def lora_config(c: ml_collections.ConfigDict) -> LoRAConfig:
    """The adapters of config `c` (`lora.*`)."""
    targets = tuple(t.strip() for t in c.lora.targets.split(",") if t.strip())
    return LoRAConfig(rank=c.lora.rank, alpha=c.lora.alpha, dropout=c.lora.dropout, targets=targets)


def merged_config(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of config `c` for its model with the LoRA adapters folded in (`lora.merge`): no adapters, all
    parameters trainable (for generation, evaluation and export of a LoRA run)."""
    c = ml_collections.ConfigDict(c.to_dict())
    c.lora.rank = 0
    c.train.trainable = "all"
    c.prompt.freeze_transformer, c.prompt.tune_prefix_layers = False, 0
    return c


def _compute_capability(platform: str) -> float | None:
    """The first local device's CUDA compute capability on a GPU platform, else None."""
    if platform != "gpu":
        return None
    return float(getattr(jax.devices()[0], "compute_capability", 0.0) or 0.0)


def validate(c: ml_collections.ConfigDict, num_devices: int) -> None:
    """Raises ValueError naming the first impossible setting."""
    checks = [
        (c.model.num_layers > 0, "model.num_layers must be > 0"),
        (c.model.heads > 0 and c.model.hidden % c.model.heads == 0, "model.hidden must be divisible by model.heads"),
        (c.model.dtype in ("float32", "bfloat16"), "model.dtype must be 'float32' or 'bfloat16'"),
        (
            0.0 <= c.model.dropout < 1.0 and 0.0 <= c.model.attention_dropout < 1.0,
            "model dropout rates must be in [0, 1)",
        ),
        (c.model.max_len in (0,) or c.model.max_len >= c.data.seq_len, "model.max_len must be 0 or >= data.seq_len"),
        (c.data.seq_len >= 16, "data.seq_len must be >= 16"),
        (c.data.batch_size > 0, "data.batch_size must be > 0"),
        (c.train.steps > 0, "train.steps must be > 0"),
        (min(c.train.log_every, c.train.eval_every, c.train.checkpoint_every) > 0, "train.*_every must be > 0"),
        (c.train.keep_checkpoints > 0, "train.keep_checkpoints must be > 0"),
        (c.model.remat in REMAT_POLICIES, f"model.remat must be one of {sorted(REMAT_POLICIES)}"),
        (c.model.block_positions in BLOCK_POSITIONS, f"model.block_positions must be one of {BLOCK_POSITIONS}"),
        (c.model.attention in ATTENTION, f"model.attention must be one of {ATTENTION}"),
        (
            c.model.attention != "splash" or not splash_unfit(c),
            f"model.attention='splash' {splash_unfit(c)}, or use model.attention='xla'",
        ),
        (
            c.model.attention != "gpu_flash" or not gpu_flash_unfit(c),
            f"model.attention='gpu_flash' {gpu_flash_unfit(c)}, or use model.attention='xla'",
        ),
        (c.train.microbatches > 0, "train.microbatches must be > 0"),
        (c.train.logits_chunk >= 0, "train.logits_chunk must be >= 0 (0: all scored logits at once)"),
        (c.train.scored_capacity >= -1, "train.scored_capacity must be -1 (auto), 0 (all positions) or > 0"),
        (c.train.on_nonfinite in NONFINITE_ACTIONS, f"train.on_nonfinite must be one of {NONFINITE_ACTIONS}"),
        (c.train.max_skipped_steps > 0, "train.max_skipped_steps must be > 0"),
        (c.lora.rank >= 0 and c.lora.alpha > 0, "lora.rank must be >= 0 (0: no adapters) and lora.alpha > 0"),
        (0.0 <= c.lora.dropout < 1.0, "lora.dropout must be in [0, 1)"),
        (
            bool(lora_config(c).targets) and set(lora_config(c).targets) <= set(TARGETS),
            f"lora.targets must be a comma list of {TARGETS}",
        ),
        (min(c.prompt.tokens, c.prompt.prefix) >= 0, "prompt.tokens and prompt.prefix must be >= 0 (0: none)"),
        (c.prompt.func in PROMPT_FUNCS, f"prompt.func must be one of {PROMPT_FUNCS}"),
        (
            0 <= c.prompt.tune_prefix_layers <= c.model.num_layers,
            "prompt.tune_prefix_layers must be in [0, model.num_layers]",
        ),
        (
            c.prompt.freeze_transformer or not c.prompt.tune_prefix_layers,
            "prompt.tune_prefix_layers needs prompt.freeze_transformer (it un-freezes layers of a frozen transformer)",
        ),
        (
            not (c.prompt.tune_prefix_layers and c.model.scan_layers),
            "prompt.tune_prefix_layers needs model.scan_layers=false (scanned layers are one stacked array each)",
        ),
        (
            not c.prompt.freeze_transformer or c.train.trainable == "auto",
            "prompt.freeze_transformer is what train.trainable=auto means with prompts; set one or the other",
        ),
        (c.train.init_new_rows in NEW_ROWS, f"train.init_new_rows must be one of {NEW_ROWS}"),
        (c.train.init_new_positions in NEW_POSITIONS, f"train.init_new_positions must be one of {NEW_POSITIONS}"),
        (c.data.host_split in HOST_SPLITS, f"data.host_split must be one of {HOST_SPLITS}"),
        (
            min(c.data.eval_batches, c.data.unigram_batches, c.model.vocab_size, c.optimizer.decay_steps) >= 0,
            "data.eval_batches, data.unigram_batches, model.vocab_size and optimizer.decay_steps must be >= 0",
        ),
        (
            c.train.peak_flops >= 0 and c.optimizer.weight_decay >= 0,
            "train.peak_flops and optimizer.weight_decay must be >= 0",
        ),
        (c.optimizer.eps > 0 and c.optimizer.clip_norm > 0, "optimizer.eps and optimizer.clip_norm must be > 0"),
        (c.optimizer.peak_lr > 0, "optimizer.peak_lr must be > 0"),
        (c.optimizer.schedule in optim.SCHEDULES, f"optimizer.schedule must be one of {optim.SCHEDULES}"),
        (0.0 <= c.optimizer.warmup_fraction < 1.0, "optimizer.warmup_fraction must be in [0, 1)"),
        (0.0 <= c.optimizer.end_lr_ratio <= 1.0, "optimizer.end_lr_ratio must be in [0, 1]"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(f"Invalid config: {message}.")
    data_devices = c.mesh.data if c.mesh.data > 0 else num_devices // (c.mesh.fsdp * c.mesh.tensor)
    if data_devices * c.mesh.fsdp * c.mesh.tensor != num_devices:
        raise ValueError(
            f"Invalid config: mesh data={c.mesh.data} fsdp={c.mesh.fsdp} tensor={c.mesh.tensor} does not cover "
            f"the {num_devices} devices; set mesh.data=-1 or make the product equal the device count."
        )
    if c.data.batch_size % (data_devices * c.mesh.fsdp * c.train.microbatches):
        raise ValueError(
            f"Invalid config: data.batch_size={c.data.batch_size} is not divisible by the "
            f"{data_devices * c.mesh.fsdp} devices it is split over (mesh data x fsdp) times "
            f"train.microbatches={c.train.microbatches}."
        )
