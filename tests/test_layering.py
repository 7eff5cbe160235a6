"""The package's layers: no upward imports, a core that imports and trains without TensorFlow or SeqIO, and the
partitioning of every parameter of glm_tiny and glm_large under the rule table."""

import ast
import os
import pathlib
import subprocess
import sys

import jax
import pytest
from conftest import ROOT
from jax.sharding import PartitionSpec as P

from glm_jax import config as config_lib
from glm_jax.model.glm import init_params
from glm_jax.training import sharding
from glm_jax.training.synthetic import TOKENS

PACKAGE = ROOT / "glm_jax"
# What each layer may import of glm_jax (its own modules always): the model nothing but the data contract; the
# engine the model; the data side neither.
ALLOWED = {
    "contract": set(),
    "console": set(),
    "model": {"contract"},
    "training": {"model", "contract", "console"},
    "data": {"contract", "console"},
}


def _layer(module: str) -> str:
    """The layer of a glm_jax module: `glm_jax.training.trainer` -> training, `glm_jax.contract` -> contract."""
    return module.split(".")[1]


def _imports(path: pathlib.Path) -> set[str]:
    """The glm_jax modules a file imports, at its top and inside its functions alike."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("glm_jax.")}
        elif isinstance(node, ast.ImportFrom) and node.module == "glm_jax":
            found |= {f"glm_jax.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("glm_jax."):
            found.add(node.module)
    return found


def _upward_imports() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        if module == "glm_jax" or _layer(module) not in ALLOWED:
            continue
        layer = _layer(module)
        problems += [
            f"{module} imports {x}" for x in sorted(_imports(path)) if _layer(x) not in {layer, *ALLOWED[layer]}
        ]
    return problems


def test_no_upward_imports():
    assert _upward_imports() == []


def test_the_import_check_can_fail():
    assert "glm_jax.data" in _imports(PACKAGE / "pretraining.py")  # from glm_jax.data import pipeline
    assert "glm_jax.console" in _imports(PACKAGE / "training" / "loop.py")
    assert _layer("glm_jax.training.trainer") == "training" and _layer("glm_jax.contract") == "contract"


CORE_WITHOUT_TENSORFLOW = """
import sys
sys.modules["tensorflow"] = None  # any import of it (or of SeqIO) fails
sys.modules["seqio"] = None
import numpy as np
import glm_jax.compile, glm_jax.compile_report, glm_jax.config
from glm_jax.model import attention, glm, layout, splash
from glm_jax.training import checkpoints, checksums, chips, flops, losses, objective, optim, recovery, sharding, trainer
from glm_jax.training.synthetic import TOKENS, synthetic_batch

c = glm_jax.config.load_config_file("configs/glm_tiny.py")
c.model.update(num_layers=1, hidden=32, heads=2)
c.data.update(batch_size=8, seq_len=32)
t = trainer.Trainer(c, glm_jax.config.model_config(c, 64, TOKENS), sharding.make_mesh())
state, metrics = t.train_step(t.init_state(0), t.device_batch(synthetic_batch(8, 32, 64, np.random.default_rng(0))))
print("step", int(state.step), "loss", float(metrics["loss"]))
"""


def test_the_core_imports_and_trains_without_tensorflow():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XLA_FLAGS": ""}  # one CPU device
    out = subprocess.run([sys.executable, "-c", CORE_WITHOUT_TENSORFLOW], capture_output=True, text=True, cwd=ROOT,
                         env=env, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("step 1 loss ")
    # The step benchmark too (the real Trainer.train_step on synthetic rows).
    command = [sys.executable, "-c", 'import sys; sys.modules["tensorflow"] = sys.modules["seqio"] = None; '
               'sys.argv = ["train_step", "--cases", "glm_tiny:2x32", "--rounds", "1", "--steps", "1"]; '
               "from benchmarks import train_step; train_step.main()"]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "scored / full" in out.stdout


# The mesh axes of each parameter under sharding.RULES, layers unrolled or scanned (the stacked layer axis
# first, never split). data is never used by a parameter; fsdp splits the embedding width,
# tensor the heads, the MLP width and the vocabulary.
LAYER = {
    "attention/dense/bias": P("fsdp"),
    "attention/dense/kernel": P("tensor", None, "fsdp"),
    "attention/query_key_value/bias": P(None, "tensor", None),
    "attention/query_key_value/kernel": P("fsdp", None, "tensor", None),
    "input_layernorm/bias": P("fsdp"),
    "input_layernorm/scale": P("fsdp"),
    "mlp/dense_4h_to_h/bias": P("fsdp"),
    "mlp/dense_4h_to_h/kernel": P("tensor", "fsdp"),
    "mlp/dense_h_to_4h/bias": P("tensor"),
    "mlp/dense_h_to_4h/kernel": P("fsdp", "tensor"),
    "post_attention_layernorm/bias": P("fsdp"),
    "post_attention_layernorm/scale": P("fsdp"),
}
OUTSIDE = {
    "block_position_embeddings/embedding": P(None, "fsdp"),
    "final_layernorm/bias": P("fsdp"),
    "final_layernorm/scale": P("fsdp"),
    "position_embeddings/embedding": P(None, "fsdp"),
    "word_embeddings/embedding": P("tensor", "fsdp"),
}


def _specs(name: str, scan: bool) -> dict:
    c = config_lib.load_config_file(ROOT / f"configs/{name}.py")
    c.model.scan_layers = scan
    glm = config_lib.model_config(c, 30522, TOKENS)
    boxed = jax.eval_shape(lambda: init_params(glm, jax.random.key(0), 8))
    specs = sharding.logical_shardings(boxed, sharding.make_mesh(devices=jax.devices()[:1]))
    flat = jax.tree_util.tree_flatten_with_path(specs)[0]
    return {"/".join(k.key for k in path): s.spec for path, s in flat}, c


@pytest.mark.parametrize("name,scan", [("glm_tiny", False), ("glm_large", False), ("glm_large", True)])
def test_golden_partition_specs(name, scan):
    specs, c = _specs(name, scan)
    if c.model.scan_layers:
        expected = {f"layers/{k}": P(None, *v) for k, v in LAYER.items()}
    else:
        expected = {f"layers_{i}/{k}": v for i in range(c.model.num_layers) for k, v in LAYER.items()}
    assert specs == expected | OUTSIDE
