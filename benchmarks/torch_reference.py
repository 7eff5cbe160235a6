"""The official GLM train step in PyTorch: a logit check against glm_jax, and its speed beside glm_jax's.

PyTorch is not a requirement of glm_jax; this script runs under a separate environment that has it:

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch numpy      # or, for a CPU-only wheel:
    /tmp/torchvenv/bin/pip install torch numpy --index-url https://download.pytorch.org/whl/cpu

    /tmp/torchvenv/bin/python benchmarks/torch_reference.py --check
    /tmp/torchvenv/bin/python benchmarks/torch_reference.py --shapes glm_tiny:16x128,glm_tiny:8x512,glm_base:8x512
    /tmp/torchvenv/bin/python benchmarks/torch_reference.py --shapes glm_tiny:16x128 --with_jax

The model is the official GLM (THUDM/GLM `GLMModel` with `GPT2ParallelTransformer`, model-parallel
size 1) with the official parameter names, so an official state dict loads into it unchanged:
word + position + block-position embeddings, pre-LayerNorm layers with a fused QKV projection and a
4h tanh-GeLU MLP, the mask built from `sep` (query q sees key k iff k < sep or k <= q), a final
LayerNorm and the output tied to the word embeddings. The step is the official pretraining step:
cross-entropy over Part B (`loss_mask`) divided by its count, backward, global grad-norm clipping
at 1.0, AdamW (0.9, 0.98, eps 1e-6, weight decay 0.1 on the weights of linear and embedding layers,
none on biases and LayerNorm parameters), the step glm_jax's `Trainer.train_step` takes with
`glm_jax.training.optim`. Dropout is the config's, as in glm_jax's step.

Two Python environments take part, and they talk through .npz files. This script runs under the
torch environment; where it needs glm_jax it runs itself again under glm_jax's environment
(`--jax_python`, default `.venv/bin/python` of this repository) as a subprocess, with the hidden
flag `--jax_side`, which imports glm_jax and never torch:

- `--check`: the glm_jax side builds a tiny GLM (`glm_jax.model.glm.init_params`, every parameter
  perturbed so that biases and LayerNorm scales are not trivial), a batch of one example per row in
  the official format (tokens, position_ids [B, 2, L], sep, padded rows, several spans, [MASK],
  [sMASK] and [gMASK]) turned into contract fields by `glm_jax.official.batch.to_contract`, and
  writes to an .npz: the parameters in the official layout (`glm_jax.official.mapping.to_official`),
  the official batch, glm_jax's logits, its gradients at those parameters, and the loss, grad norm
  and parameters after a few steps of glm_jax's own `Trainer.train_step`. The torch side loads the
  state dict (strict: every official name, nothing else), compares its logits at the real positions
  (eager and `torch.compile`) and its gradients, then takes the same steps (same learning rates) and
  compares losses, grad norms and parameters (this check found glm_jax decaying its fused QKV bias,
  stored [3, heads, head_dim], which the official code does not; fixed in `glm_jax.training.optim`).
  Exit status 1 on any mismatch with the official step.
- `--shapes` (timing): model sizes come from `configs/NAME.py` (read by the glm_jax side), the
  vocabulary is `--vocab_size` ids padded to a multiple of 128 rows as glm_jax pads it, and the
  batch is `glm_jax.training.synthetic`'s layout in the official format: one example per row, 85%
  Part A with one [MASK], then one Part B span (15%) filling it, random token ids. Each variant
  (torch eager, `torch.compile`) takes `--warmup` steps, then `--rounds` rounds of `--steps` steps,
  the variants alternating inside a round; tokens/s = batch x seq_len / seconds per step, best
  (fastest round) and median. With `--with_jax`, every round also runs glm_jax's own benchmark as a
  subprocess (`python -m benchmarks.train_step` for the same case, one round), so drift of a shared
  machine falls on all; the command is printed either way, to run by hand.

Take timings on a quiet machine. Where other processes load the cores, torch's OpenMP threads
spin-wait at every parallel region and eager steps get several times slower (measured at a load of
~3 on 2 cores, glibc's malloc: 3.1 s per glm_tiny 16 x 128 eager step, 0.63 s with the passive
policy); `OMP_WAIT_POLICY=PASSIVE`
(set before the command) or `--threads 1` limits that, but quiet-machine numbers are the ones to
report. `torch.compile` keeps its compiled kernels in a disk cache (/tmp/torchinductor_$USER), so
the first step of a later run is shorter than that of the first run.

Timing runs preload jemalloc (`--jemalloc auto`, where libjemalloc2 is installed; glm_jax's
processes get the environment without it): with glibc's malloc, each large tensor (the attention
scores [B, heads, L, L] of the official attention: 100 MB per op at glm_base 8 x 512) is mapped
and page-faulted in afresh at every op; measured on this 2-core machine, the official attention's
forward at that size took 140 ms with glibc's malloc and 37 ms with jemalloc. `--jemalloc off`
measures torch as it comes.
"""

import argparse
import functools
import json
import math
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_JAX_PYTHON = ROOT / ".venv" / "bin" / "python"
DEFAULT_SHAPES = "glm_tiny:16x128,glm_tiny:8x512,glm_base:8x512"

INSTALL_HELP = """PyTorch is not installed in this Python ({python}).
This script needs it, and glm_jax does not: make a separate environment for it, e.g.

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch numpy
    (CPU-only wheel: add --index-url https://download.pytorch.org/whl/cpu)

and run the script with /tmp/torchvenv/bin/python benchmarks/torch_reference.py ..."""

# Command token ids of the shipped vocabulary (glm_jax.training.synthetic.TOKENS).
PAD, EOS, CLS, MASK, SMASK, GMASK, SOP, EOP = 0, 1, 3, 5, 6, 7, 8, 9
BLANK_MARKERS = (MASK, SMASK, GMASK)
FIRST_TEXT_ID = 11  # ids below are command tokens

# The official optimizer (glm_jax's base_config().optimizer): AdamW and clipping.
BETAS, ADAM_EPS, WEIGHT_DECAY, CLIP_NORM = (0.9, 0.98), 1e-6, 0.1, 1.0
LAYER_NORM_EPS = 1e-5

# --check: the tiny model and how close it must come.
CHECK_MODEL = {"num_layers": 2, "hidden": 64, "heads": 4, "vocab_rows": 256, "seq_len": 24}
CHECK_STEPS, CHECK_LR = 3, 1e-3
LOGIT_ATOL, GRAD_ATOL, LOSS_RTOL, PARAM_ATOL = 1e-4, 1e-6, 1e-5, 1e-5


# ---------------------------------------------------------------------------------------------
# Batches in the official format (NumPy only: both sides use them).


def official_row(part_a: list[int], spans: list[tuple[int, list[int]]], seq_len: int) -> dict:
    """One example in its own right-padded row, as the official block-LM collator lays it out.

    `part_a` holds the text with its blank markers; `spans` is Part B in order, each `(index of
    its marker in part_a, the tokens that fill it)`. Each span is `sop` + tokens, at its marker's
    position id, block position ids 1, 2, ...; its targets are the tokens then `eop`.
    """
    tokens, positions, blocks = list(part_a), list(range(len(part_a))), [0] * len(part_a)
    labels, loss_mask = [0] * len(part_a), [0] * len(part_a)
    for marker, fill in spans:
        if part_a[marker] not in BLANK_MARKERS:
            raise ValueError(f"Part A position {marker} holds {part_a[marker]}, not a blank marker.")
        tokens += [SOP, *fill]
        positions += [marker] * (len(fill) + 1)
        blocks += list(range(1, len(fill) + 2))
        labels += [*fill, EOP]
        loss_mask += [1] * (len(fill) + 1)
    length = len(tokens)
    if length > seq_len:
        raise ValueError(f"The example holds {length} tokens, more than seq_len={seq_len}.")
    pad = seq_len - length
    return {
        "tokens": np.array(tokens + [PAD] * pad, np.int64),
        "position_ids": np.array([positions + [0] * pad, blocks + [0] * pad], np.int64),
        "sep": len(part_a),
        "length": length,
        "labels": np.array(labels + [0] * pad, np.int64),
        "loss_mask": np.array(loss_mask + [0] * pad, np.float32),
    }


def stack_rows(rows: list[dict]) -> dict:
    """The official batch (`tokens`, `position_ids`, `sep`, `labels`, `loss_mask`) and `lengths` of rows."""
    batch = {name: np.stack([row[name] for row in rows]) for name in ("tokens", "position_ids", "labels", "loss_mask")}
    batch["sep"] = np.array([row["sep"] for row in rows], np.int64)
    batch["lengths"] = np.array([row["length"] for row in rows], np.int64)
    return batch


def check_batch(vocab_rows: int, seq_len: int) -> dict:
    """Three rows of different kinds: two [MASK] spans filled out of order (padded), one [sMASK]
    span (padded), a [gMASK] at the end of Part A whose span fills the row to the end."""
    rng = np.random.default_rng(7)
    text = lambda n: [int(t) for t in rng.integers(FIRST_TEXT_ID, vocab_rows, n)]  # noqa: E731
    a0 = [CLS, *text(2), MASK, *text(2), MASK, *text(1), EOS]
    a1 = [CLS, *text(1), SMASK, *text(6), EOS]
    a2 = [CLS, *text(11), GMASK]
    rows = [
        official_row(a0, [(6, text(2)), (3, text(1))], seq_len),
        official_row(a1, [(2, text(6))], seq_len),
        official_row(a2, [(12, text(seq_len - len(a2) - 1))], seq_len),
    ]
    return stack_rows(rows)


def synthetic_official_batch(batch: int, seq_len: int, vocab_size: int, seed: int = 0) -> dict:
    """`glm_jax.training.synthetic.synthetic_batch`'s layout in the official format: 85% Part A with
    one [MASK] in its middle, then one Part B span filling it to the end of the row; random ids."""
    rng = np.random.default_rng(seed)
    part_a = int(seq_len * 0.85)
    index = np.arange(seq_len)
    tokens = rng.integers(FIRST_TEXT_ID, vocab_size, (batch, seq_len))
    tokens[:, part_a // 2] = MASK
    tokens[:, part_a] = SOP
    positions = np.where(index < part_a, index, part_a // 2)
    blocks = np.where(index < part_a, 0, index - part_a + 1)
    return {
        "tokens": tokens.astype(np.int64),
        "position_ids": np.broadcast_to(np.stack([positions, blocks]), (batch, 2, seq_len)).astype(np.int64),
        "sep": np.full((batch,), part_a, np.int64),
        "labels": rng.integers(FIRST_TEXT_ID, vocab_size, (batch, seq_len)).astype(np.int64),
        "loss_mask": np.broadcast_to(index >= part_a, (batch, seq_len)).astype(np.float32),
    }


def padded_rows(vocab_size: int) -> int:
    """Embedding rows as glm_jax's `model_config` sets them: the vocabulary rounded up to 128."""
    return -(-vocab_size // 128) * 128


# ---------------------------------------------------------------------------------------------
# The glm_jax side (run under glm_jax's environment; never imports torch).


def jax_side_configs(names: list[str], out: pathlib.Path) -> None:
    """Writes the model fields of configs/NAME.py for each name as JSON."""
    from glm_jax.config import load_config_file

    models = {}
    for name in names:
        m = load_config_file(ROOT / "configs" / f"{name}.py").model
        models[name] = {
            key: m[key] for key in ("num_layers", "hidden", "heads", "mlp_ratio", "dropout", "attention_dropout")
        }
    out.write_text(json.dumps(models))


def jax_side_check(out: pathlib.Path) -> None:
    """Writes glm_jax's tiny model (official layout), the batch, its logits and train steps to `out` (.npz)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from glm_jax.config import base_config
    from glm_jax.model.glm import GLM, GLMConfig, init_params
    from glm_jax.official import batch as official_batch
    from glm_jax.official import mapping
    from glm_jax.training import sharding
    from glm_jax.training.objective import contract_sums
    from glm_jax.training.trainer import Trainer

    m = CHECK_MODEL
    seq_len = m["seq_len"]
    official = check_batch(m["vocab_rows"], seq_len)
    contract = official_batch.to_contract(
        official["tokens"],
        official["position_ids"],
        official["sep"],
        BLANK_MARKERS,
        lengths=official["lengths"],
        targets=official["labels"],
        loss_mask=official["loss_mask"],
    )
    config = GLMConfig(
        vocab_size=m["vocab_rows"],
        num_layers=m["num_layers"],
        hidden=m["hidden"],
        heads=m["heads"],
        max_len=seq_len,
        blank_markers=BLANK_MARKERS,
    )
    params = nn.unbox(init_params(config, jax.random.key(0), seq_len))
    # Zero biases and unit LayerNorm scales would let a mapping mistake in them pass unseen.
    noise = np.random.default_rng(1)
    params = jax.tree.map(lambda p: np.asarray(p) + noise.normal(0.0, 0.05, p.shape).astype(np.float32), params)
    logits = np.asarray(jax.jit(lambda p, b: GLM(config).apply({"params": p}, b))(params, contract))

    def mean_loss(p):
        sums = contract_sums(config, p, contract)
        return sums["loss_sum"] / jnp.maximum(sums["weight_sum"], 1.0)

    grads = jax.jit(jax.grad(mean_loss))(params)

    c = base_config()
    c.model.update(num_layers=m["num_layers"], hidden=m["hidden"], heads=m["heads"])
    c.model.update(dropout=0.0, attention_dropout=0.0)
    c.data.batch_size, c.data.seq_len = len(official["tokens"]), seq_len
    c.optimizer.peak_lr, c.optimizer.warmup_fraction = CHECK_LR, 0.0  # a real step from step 0
    c.train.steps = 10
    if "scored_capacity" in c.train:
        c.train.scored_capacity = 0  # logits at every position, as the official step
    trainer = Trainer(c, config, sharding.make_mesh())
    state = trainer.state_from_params(params)
    device_batch = trainer.device_batch(contract)
    history = {"lr": [], "loss": [], "grad_norm": []}
    for step in range(CHECK_STEPS):
        history["lr"].append(float(trainer.schedule(step)))
        state, metrics = trainer.train_step(state, device_batch)
        history["loss"].append(float(metrics["loss"]))
        history["grad_norm"].append(float(metrics["grad_norm"]))

    arrays = {f"param:{k}": v for k, v in mapping.to_official(params).items()}
    arrays |= {f"final:{k}": v for k, v in mapping.to_official(jax.device_get(state.params)).items()}
    arrays |= {f"grad:{k}": v for k, v in mapping.to_official(jax.device_get(grads)).items()}
    arrays |= {f"batch:{k}": v for k, v in official.items()}
    arrays |= {f"history:{k}": np.array(v, np.float64) for k, v in history.items()}
    np.savez(out, logits=logits, heads=np.array(m["heads"]), **arrays)


def jax_env() -> dict[str, str]:
    """The environment for glm_jax's processes: this one without the allocator `use_jemalloc` added,
    the repository on the path, CPU JAX and quiet TensorFlow unless set otherwise."""
    env = dict(os.environ)
    if _JEMALLOC_MARK in env:
        for name in ("LD_PRELOAD", "MALLOC_CONF"):
            env.pop(name, None)
            if f"{_JEMALLOC_MARK}_{name}" in env:
                env[name] = env[f"{_JEMALLOC_MARK}_{name}"]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("JAX_PLATFORMS", "cpu")
    return env


def run_jax_side(jax_python: str, *args: str) -> None:
    """Runs this script under glm_jax's environment with `--jax_side` and `args`."""
    if not pathlib.Path(jax_python).exists():
        sys.exit(f"glm_jax's Python {jax_python} does not exist: pass --jax_python (the environment of glm_jax).")
    command = [jax_python, __file__, "--jax_side", *args]
    done = subprocess.run(command, cwd=ROOT, env=jax_env(), capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"The glm_jax side failed (exit {done.returncode}):\n{done.stdout}{done.stderr[-6000:]}")


# ---------------------------------------------------------------------------------------------
# The official GLM in PyTorch.


# jemalloc, never returning freed pages to the system: with glibc's malloc every large tensor
# (above its 32 MiB mmap ceiling, e.g. the [B, heads, L, L] attention scores) is mapped afresh and
# page-faulted in at each use, which costs more than the arithmetic on some machines.
JEMALLOC_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",
    "/usr/local/lib/libjemalloc.so.2",
)
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
_JEMALLOC_MARK = "TORCH_REFERENCE_JEMALLOC"  # set once this process runs with the preloaded jemalloc


def use_jemalloc(choice: str) -> str:
    """Restarts this script with jemalloc preloaded (`choice`: auto, off or the library's path);
    returns what the allocator is, for the report."""
    if _JEMALLOC_MARK in os.environ:
        return f"jemalloc ({os.environ[_JEMALLOC_MARK]}, {JEMALLOC_CONF})"
    if choice == "off":
        return "the C library's malloc (--jemalloc off)"
    path = next((p for p in JEMALLOC_PATHS if os.path.exists(p)), None) if choice == "auto" else choice
    if path is None or not os.path.exists(path):
        return "the C library's malloc (no jemalloc found: apt-get install libjemalloc2, or --jemalloc PATH)"
    env = dict(os.environ, **{_JEMALLOC_MARK: path})
    for name in ("LD_PRELOAD", "MALLOC_CONF"):
        if name in os.environ:
            env[f"{_JEMALLOC_MARK}_{name}"] = os.environ[name]
    env["LD_PRELOAD"] = os.pathsep.join(filter(None, [path, os.environ.get("LD_PRELOAD")]))
    env["MALLOC_CONF"] = JEMALLOC_CONF
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def import_torch():
    try:
        import torch
    except ImportError:
        sys.exit(INSTALL_HELP.format(python=sys.executable))
    return torch


@functools.cache
def official_glm_class():
    """The `OfficialGLM` module class (defined on first use, so that the glm_jax side needs no torch)."""
    torch = import_torch()
    nn, F = torch.nn, torch.nn.functional

    class SelfAttention(nn.Module):
        """Fused QKV (rows Q, K, V, head by head in each), scaled scores, the 0/1 mask applied as
        `scores * mask - 10000 * (1 - mask)`, softmax, dropout, output projection, dropout."""

        def __init__(self, hidden, heads, attention_dropout, output_dropout):
            super().__init__()
            self.heads, self.head_dim = heads, hidden // heads
            self.query_key_value = nn.Linear(hidden, 3 * hidden)
            self.dense = nn.Linear(hidden, hidden)
            self.attention_dropout = nn.Dropout(attention_dropout)
            self.output_dropout = nn.Dropout(output_dropout)

        def split_heads(self, x):  # [b, s, h] -> [b, heads, s, head_dim]
            return x.view(*x.shape[:2], self.heads, self.head_dim).transpose(1, 2)

        def forward(self, x, mask):
            query, key, value = (self.split_heads(t) for t in self.query_key_value(x).chunk(3, dim=-1))
            scores = torch.matmul(query, key.transpose(-1, -2) / math.sqrt(self.head_dim))
            scores = scores * mask - 10000.0 * (1.0 - mask)
            probs = self.attention_dropout(torch.softmax(scores, dim=-1))
            context = torch.matmul(probs, value).transpose(1, 2).reshape(x.shape)
            return self.output_dropout(self.dense(context))

    class MLP(nn.Module):
        def __init__(self, hidden, ratio, output_dropout):
            super().__init__()
            self.dense_h_to_4h = nn.Linear(hidden, ratio * hidden)
            self.dense_4h_to_h = nn.Linear(ratio * hidden, hidden)
            self.dropout = nn.Dropout(output_dropout)

        def forward(self, x):
            return self.dropout(self.dense_4h_to_h(F.gelu(self.dense_h_to_4h(x), approximate="tanh")))

    class Layer(nn.Module):
        """Pre-LayerNorm: `h = x + attention(LN(x))`, `out = h + mlp(LN(h))`."""

        def __init__(self, hidden, heads, ratio, attention_dropout, output_dropout):
            super().__init__()
            self.input_layernorm = nn.LayerNorm(hidden, eps=LAYER_NORM_EPS)
            self.attention = SelfAttention(hidden, heads, attention_dropout, output_dropout)
            self.post_attention_layernorm = nn.LayerNorm(hidden, eps=LAYER_NORM_EPS)
            self.mlp = MLP(hidden, ratio, output_dropout)

        def forward(self, x, mask):
            x = x + self.attention(self.input_layernorm(x), mask)
            return x + self.mlp(self.post_attention_layernorm(x))

    class Transformer(nn.Module):
        """Position and block-position embeddings, the layers, the final LayerNorm (`transformer.*`)."""

        def __init__(self, num_layers, hidden, heads, max_len, ratio, dropout, attention_dropout):
            super().__init__()
            self.position_embeddings = nn.Embedding(max_len + 1, hidden)
            self.block_position_embeddings = nn.Embedding(max_len + 1, hidden)
            self.embedding_dropout = nn.Dropout(dropout)
            self.layers = nn.ModuleList(
                Layer(hidden, heads, ratio, attention_dropout, dropout) for _ in range(num_layers)
            )
            self.final_layernorm = nn.LayerNorm(hidden, eps=LAYER_NORM_EPS)

        def forward(self, x, position_ids, sep):
            # The official mask from `sep` (the length of Part A) per row: key k is visible to
            # query q iff k < sep (Part A, bidirectional) or k <= q (Part B, causal).
            index = torch.arange(x.shape[1], device=x.device)
            visible = (index[None, None, :] <= index[None, :, None]) | (index[None, None, :] < sep[:, None, None])
            mask = visible.to(x.dtype)[:, None]  # [b, 1, q, k]
            x = x + self.position_embeddings(position_ids[:, 0]) + self.block_position_embeddings(position_ids[:, 1])
            x = self.embedding_dropout(x)
            for layer in self.layers:
                x = layer(x, mask)
            return self.final_layernorm(x)

    class OfficialGLM(nn.Module):
        """`OfficialGLM(...)(tokens [b, s], position_ids [b, 2, s], sep [b])` → logits `[b, s, vocab_rows]`."""

        def __init__(
            self, vocab_rows, num_layers, hidden, heads, max_len, mlp_ratio=4, dropout=0.0, attention_dropout=0.0
        ):
            super().__init__()
            self.num_layers = num_layers
            self.word_embeddings = nn.Embedding(vocab_rows, hidden)
            self.transformer = Transformer(num_layers, hidden, heads, max_len, mlp_ratio, dropout, attention_dropout)
            self.reset_parameters()

        def reset_parameters(self, std: float = 0.02):
            """The official initialization: N(0, std) matrices, output projections N(0, std / sqrt(2 layers)),
            zero biases, unit LayerNorm scales."""
            with torch.no_grad():
                for name, p in self.named_parameters():
                    if p.ndim == 1:
                        p.fill_(1.0 if "layernorm" in name and name.endswith(".weight") else 0.0)
                    elif name.endswith(("attention.dense.weight", "mlp.dense_4h_to_h.weight")):
                        p.normal_(0.0, std / math.sqrt(2 * self.num_layers))
                    else:
                        p.normal_(0.0, std)

        def forward(self, tokens, position_ids, sep):
            hidden = self.transformer(self.word_embeddings(tokens), position_ids, sep)
            return F.linear(hidden, self.word_embeddings.weight)  # tied output, no bias

        def pretraining_loss(self, tokens, position_ids, sep, labels, loss_mask):
            """The official loss: cross-entropy at every position, summed over `loss_mask`, / its count."""
            logits = self(tokens, position_ids, sep)
            losses = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), reduction="none")
            mask = loss_mask.flatten()
            return (losses * mask).sum() / mask.sum().clamp(min=1.0)

    return OfficialGLM


def make_optimizer(model, lr: float, fused: bool):
    """AdamW with weight decay on the weights of the linear and embedding layers, none on biases
    and LayerNorm parameters (the official `get_params_for_weight_decay_optimization`)."""
    torch = import_torch()
    decayed = {name: p.ndim > 1 for name, p in model.named_parameters()}
    params = dict(model.named_parameters())
    groups = [
        {"params": [p for n, p in params.items() if decayed[n]], "weight_decay": WEIGHT_DECAY},
        {"params": [p for n, p in params.items() if not decayed[n]], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=BETAS, eps=ADAM_EPS, **({"fused": True} if fused else {}))


class TrainStep:
    """One official update: loss, backward, clip the global grad norm, AdamW. `compile`: the
    forward and loss (and so the backward) go through `torch.compile`; the optimizer stays eager."""

    def __init__(self, model, lr: float, compile: bool, fused: bool):
        torch = import_torch()
        self.torch, self.model, self.lr = torch, model, lr
        self.optimizer = make_optimizer(model, lr, fused)
        self.loss = torch.compile(model.pretraining_loss, dynamic=False) if compile else model.pretraining_loss

    def __call__(self, batch: dict, lr: float | None = None):
        """(loss, grad norm before clipping), as tensors."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr if lr is None else lr
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(batch["tokens"], batch["position_ids"], batch["sep"], batch["labels"], batch["loss_mask"])
        loss.backward()
        grad_norm = self.torch.nn.utils.clip_grad_norm_(self.model.parameters(), CLIP_NORM)
        self.optimizer.step()
        return loss.detach(), grad_norm


def torch_batch(batch: dict) -> dict:
    torch = import_torch()
    fields = ("tokens", "position_ids", "sep", "labels", "loss_mask")
    return {k: torch.from_numpy(np.ascontiguousarray(batch[k])) for k in fields}


def fused_adamw_available() -> bool:
    torch = import_torch()
    try:
        probe = torch.nn.Parameter(torch.zeros(2))
        probe.grad = torch.ones(2)
        torch.optim.AdamW([probe], fused=True).step()
        return True
    except (RuntimeError, TypeError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------
# --check


def check(args) -> bool:
    torch = import_torch()
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "glm_jax.npz"
        start = time.perf_counter()
        run_jax_side(args.jax_python, "check", "--out", str(path))
        print(f"glm_jax side: tiny model, logits and {CHECK_STEPS} train steps in {time.perf_counter() - start:.1f}s")
        with np.load(path) as f:
            data = {k: f[k] for k in f.files}
    state = {k.split(":", 1)[1]: torch.from_numpy(v) for k, v in data.items() if k.startswith("param:")}
    final = {k.split(":", 1)[1]: v for k, v in data.items() if k.startswith("final:")}
    official = {k.split(":", 1)[1]: v for k, v in data.items() if k.startswith("batch:")}
    history = {k.split(":", 1)[1]: v for k, v in data.items() if k.startswith("history:")}
    grads = {k.split(":", 1)[1]: v for k, v in data.items() if k.startswith("grad:")}
    m = CHECK_MODEL
    OfficialGLM = official_glm_class()

    def fresh_model():
        model = OfficialGLM(m["vocab_rows"], m["num_layers"], m["hidden"], int(data["heads"]), m["seq_len"])
        model.load_state_dict(state, strict=True)  # every official name, and nothing else
        return model

    batch = torch_batch(official)
    real = np.arange(m["seq_len"])[None, :] < official["lengths"][:, None]
    ok = True

    def report(what, diff, tolerance):
        nonlocal ok
        ok &= bool(diff <= tolerance)
        print(f"  {what:72s} {diff:9.2e}  (tolerance {tolerance:.0e})  {'ok' if diff <= tolerance else 'MISMATCH'}")

    names = list(state)
    print(f"state dict: {len(names)} official tensors, loaded strictly ({names[0]}, ..., {names[-1]})")
    lengths, sep = official["lengths"].tolist(), official["sep"].tolist()
    print(f"batch: {len(real)} rows x {m['seq_len']}, real lengths {lengths}, sep {sep}")
    expected = data["logits"][real]
    print(f"logits at the {int(real.sum())} real positions, |glm_jax| max {np.abs(expected).max():.3f}:")
    for variant in ("eager", "compile"):
        model = fresh_model().eval()
        forward = torch.compile(model, dynamic=False) if variant == "compile" else model
        with torch.no_grad():
            logits = forward(batch["tokens"], batch["position_ids"], batch["sep"]).numpy()
        report(f"torch {variant} vs glm_jax, max |difference|", np.abs(logits[real] - expected).max(), LOGIT_ATOL)

    print("gradients of the loss at the initial parameters (before clipping) vs glm_jax's:")
    model = fresh_model().train()
    model.pretraining_loss(**batch).backward()
    grad_diff = max(np.abs(p.grad.numpy() - grads[n]).max() for n, p in model.named_parameters())
    top = max(np.abs(g).max() for g in grads.values())
    report(f"torch eager vs glm_jax, max |difference| (max |gradient| {top:.2f})", grad_diff, GRAD_ATOL)

    print(f"{CHECK_STEPS} train steps (lr {np.round(history['lr'], 7).tolist()}) vs glm_jax's Trainer.train_step:")
    fused = fused_adamw_available()

    def train(variant):
        """Differences from glm_jax after the steps: loss and grad norm (relative), parameters per tensor."""
        model = fresh_model().train()
        step = TrainStep(model, CHECK_LR, compile=variant == "compile", fused=fused)
        losses, norms = np.zeros(CHECK_STEPS), np.zeros(CHECK_STEPS)
        for i, lr in enumerate(history["lr"]):
            loss, norm = step(batch, float(lr))
            losses[i], norms[i] = float(loss), float(norm)
        after = {k: v.detach().numpy() for k, v in model.state_dict().items()}
        params = {k: float(np.abs(after[k] - final[k]).max()) for k in final}
        relative = lambda a, b: float(np.max(np.abs(a - b) / np.abs(b)))  # noqa: E731
        return relative(losses, history["loss"]), relative(norms, history["grad_norm"]), params

    for variant in ("eager", "compile"):
        loss_diff, norm_diff, params = train(variant)
        report(f"torch {variant}: loss, max relative difference", loss_diff, LOSS_RTOL)
        report(f"torch {variant}: grad norm (before clipping), max relative difference", norm_diff, LOSS_RTOL)
        report(f"torch {variant}: parameters after the steps, max |difference|", max(params.values()), PARAM_ATOL)
    print("CHECK PASSED" if ok else "CHECK FAILED")
    return ok


# ---------------------------------------------------------------------------------------------
# Timing


def parse_shapes(text: str) -> list[tuple[str, int, int]]:
    cases = []
    for case in text.split(","):
        name, shape = case.split(":")
        batch, seq_len = (int(x) for x in shape.split("x"))
        cases.append((name, batch, seq_len))
    return cases


def jax_command(args, name: str, batch: int, seq_len: int) -> list[str]:
    """glm_jax's own benchmark for one case, one round (its CLI before and after `--cases`)."""
    python = [str(args.jax_python), "-m", "benchmarks.train_step"]
    if "--cases" in (ROOT / "benchmarks" / "train_step.py").read_text():
        return python + [
            f"--cases={name}:{batch}x{seq_len}",
            f"--logits={args.jax_logits}",
            "--rounds=1",
            f"--steps={args.steps}",
            f"--vocab_size={args.vocab_size}",
        ]
    return python + [
        f"--configs={name}",
        f"--batch={batch}",
        f"--seq_len={seq_len}",
        f"--steps={args.steps}",
        f"--vocab_size={args.vocab_size}",
    ]


_JAX_LINE = re.compile(r"\|\s*(?:(full|scored)\s+logits.*)?\|\s*([\d,.]+) tokens/s")


def run_jax_round(command: list[str]) -> dict[str, float]:
    """tokens/s of each glm_jax path (`full`, `scored`, or `jax` for an older benchmark) from one run."""
    done = subprocess.run(command, cwd=ROOT, env=jax_env(), capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"glm_jax's benchmark failed (exit {done.returncode}): {' '.join(command)}\n{done.stderr[-4000:]}")
    found = {}
    for line in done.stdout.splitlines():
        match = _JAX_LINE.search(line)
        if match:
            found[f"jax {match.group(1) or 'step'}"] = float(match.group(2).replace(",", ""))
    if not found:
        sys.exit(f"No tokens/s in the output of {' '.join(command)}:\n{done.stdout}")
    return found


def timed(step, batch, steps: int) -> float:
    """Seconds per step over `steps` steps (the loss is read at the end, as jax blocks on its metrics)."""
    start = time.perf_counter()
    for _ in range(steps):
        loss, _ = step(batch)
    float(loss)
    return (time.perf_counter() - start) / steps


def measure(args, model_fields: dict, name: str, batch_size: int, seq_len: int, fused: bool) -> None:
    torch = import_torch()
    OfficialGLM = official_glm_class()
    rows = padded_rows(args.vocab_size)
    batch = torch_batch(synthetic_official_batch(batch_size, seq_len, args.vocab_size))
    tokens = batch_size * seq_len
    command = jax_command(args, name, batch_size, seq_len)
    print(f"\n{name} batch {batch_size} x {seq_len} ({rows} embedding rows); glm_jax: {' '.join(command)}", flush=True)
    runs = {}  # variant: (step, first step seconds, [seconds per step of each round])
    for variant in args.variants.split(","):
        torch._dynamo.reset()  # each case compiles afresh, static shapes
        torch.manual_seed(0)
        model = OfficialGLM(rows, max_len=seq_len, **model_fields).train()
        step = TrainStep(model, 1e-4, compile=variant == "compile", fused=fused)
        first = timed(step, batch, 1)  # compiles
        if args.warmup > 1:
            timed(step, batch, args.warmup - 1)
        runs[f"torch {variant}"] = (step, first, [])
        params = sum(p.numel() for p in model.parameters())
        print(f"  torch {variant:8s} {params:,} params, first step {first:.1f}s", flush=True)
    jax_rounds: dict[str, list[float]] = {}
    for r in range(args.rounds):
        order = list(runs) if r % 2 == 0 else list(runs)[::-1]
        for variant in order:
            step, _, seconds = runs[variant]
            seconds.append(timed(step, batch, args.steps))
        if args.with_jax:
            for path, rate in run_jax_round(command).items():
                jax_rounds.setdefault(path, []).append(tokens / rate)
        done = ", ".join(f"{v} {tokens / s[-1]:,.0f}" for v, (_, _, s) in runs.items())
        done += "".join(f", {p} {tokens / s[-1]:,.0f}" for p, s in jax_rounds.items())
        print(f"  round {r + 1}/{args.rounds}: tokens/s {done}", flush=True)
    results = {v: s for v, (_, _, s) in runs.items()} | jax_rounds
    for variant, seconds in results.items():
        best, median = min(seconds), statistics.median(seconds)
        print(
            f"{name:10s} {batch_size:3d} x {seq_len:4d} | {variant:13s} | {best * 1e3:9.1f} ms/step best, "
            f"{median * 1e3:9.1f} median | {tokens / best:10,.0f} tokens/s best, {tokens / median:10,.0f} median",
            flush=True,
        )


def benchmark(args, allocator: str) -> None:
    torch = import_torch()
    cases = parse_shapes(args.shapes)
    names = sorted({name for name, _, _ in cases})
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "configs.json"
        run_jax_side(args.jax_python, "configs", "--names", ",".join(names), "--out", str(path))
        models = json.loads(path.read_text())
    fused = fused_adamw_available()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; AdamW {'fused' if fused else 'foreach'}; "
        f"vocabulary {args.vocab_size} ids; {args.warmup} warm-up steps, {args.rounds} rounds of {args.steps} steps; "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; load average {os.getloadavg()[0]:.2f} "
        f"on {os.cpu_count()} cores; allocator: {allocator}"
    )
    for name, batch, seq_len in cases:
        measure(args, models[name], name, batch, seq_len, fused)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare logits, gradients and train steps with glm_jax (then time only if --shapes is given)",
    )
    parser.add_argument(
        "--shapes", default=None, help=f"config:BxL,... to time (without --check, default {DEFAULT_SHAPES})"
    )
    parser.add_argument("--variants", default="eager,compile", help="torch variants to time: eager, compile")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant (the first compiles)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="steps per variant per round")
    parser.add_argument("--vocab_size", type=int, default=8000, help="ids; rows are padded to 128 as glm_jax does")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--jemalloc", default="auto", help="timing: auto (preload it if installed), off, or a path")
    parser.add_argument("--with_jax", action="store_true", help="run glm_jax's benchmark in every round too")
    parser.add_argument("--jax_logits", default="both", choices=["both", "full", "scored"], help="glm_jax's paths")
    parser.add_argument("--jax_python", default=str(DEFAULT_JAX_PYTHON), help="the Python of glm_jax's environment")
    parser.add_argument("--jax_side", choices=["check", "configs"], help=argparse.SUPPRESS)
    parser.add_argument("--names", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.jax_side == "check":
        return jax_side_check(pathlib.Path(args.out))
    if args.jax_side == "configs":
        return jax_side_configs(args.names.split(","), pathlib.Path(args.out))
    timing = bool(args.shapes) or not args.check
    allocator = use_jemalloc(args.jemalloc) if timing else ""
    import_torch().set_num_threads(args.threads)
    if args.check and not check(args):
        sys.exit(1)
    if timing:
        args.shapes = args.shapes or DEFAULT_SHAPES
        benchmark(args, allocator)


if __name__ == "__main__":
    main()
