"""Default configuration and its validation. Files in configs/ start from `base_config()`.

Every option has its default here; `validate` rejects impossible combinations with a message that
names the key, before anything is compiled or read.
"""

import importlib.util
import pathlib

import ml_collections

from glm_jax.data import pipeline, tasks
from glm_jax.model.glm import REMAT_POLICIES


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

    c.data = ml_collections.ConfigDict()
    c.data.task = tasks.DEFAULT_TASK
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

    c.distributed = ml_collections.ConfigDict()  # see glm_jax/distributed.py
    c.distributed.coordinator_address = ""  # host:port of process 0; empty: auto-detect (TPU pod, SLURM)
    c.distributed.num_processes = 0
    c.distributed.process_id = -1
    c.distributed.cpu_collectives = "gloo"  # cross-process collectives for CPU devices

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1  # -1: all devices left over by the other axes
    c.mesh.fsdp = 1
    c.mesh.tensor = 1
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
        (c.train.microbatches > 0, "train.microbatches must be > 0"),
        (c.data.host_split in pipeline.HOST_SPLITS, f"data.host_split must be one of {pipeline.HOST_SPLITS}"),
        (c.optimizer.peak_lr > 0, "optimizer.peak_lr must be > 0"),
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
