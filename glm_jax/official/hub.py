"""The Hugging Face hub layout of the released GLM checkpoints (THUDM/glm-large, glm-2b, glm-10b, ...).

A released repository holds, beside the hub's own Python files (`configuration_glm.py`,
`modeling_glm.py`, `tokenization_glm.py`, which transformers loads with `trust_remote_code=True`):

    pytorch_model.bin   the official state dict (`mapping`) with every name prefixed `glm.`, as the
                        hub's GLMForConditionalGeneration (`self.glm = GLMModel(config)`) saves it
    config.json         the hub's GLMConfig: the shape, the dropout rates and flags every released
                        model has the same (`FIXED_CONFIG`), `torch_dtype`
    tokenizer files     `hub_tokenizer`

glm_jax writes the same and `model.safetensors` (the same tensors, safetensors' own format, header
metadata `format: pt` as transformers expects), and reads either file back. Both writers write each
file under a temporary name and rename it, so an interrupted export leaves no truncated file.
"""

import json
import os
from collections.abc import Callable

import numpy as np
import safetensors
import safetensors.numpy

from glm_jax.official import mapping, torch_format

WEIGHTS_BIN = "pytorch_model.bin"
WEIGHTS_SAFETENSORS = "model.safetensors"
CONFIG = "config.json"

# The hub's GLMConfig keys whose value is the same in every released config.json (glm-large-chinese,
# glm-roberta-large, glm-2b, glm-10b, glm-10b-chinese): what glm_jax's GLM is, in the hub's terms.
# auto_map is theirs but glm-10b-chinese's, which maps AutoModelForSequenceClassification instead.
FIXED_CONFIG = {
    "architectures": ["GLMModel"],
    "attention_scale": 1.0,
    "auto_map": {
        "AutoConfig": "configuration_glm.GLMConfig",
        "AutoModel": "modeling_glm.GLMModel",
        "AutoModelForSeq2SeqLM": "modeling_glm.GLMForConditionalGeneration",
        "AutoModelForMultipleChoice": "modeling_glm.GLMForMultipleChoice",
    },
    "block_position_encoding": True,
    "checkpoint_activations": False,
    "checkpoint_num_layers": 1,
    "initializer_range": 0.02,
    "model_type": "glm",
    "output_predict": True,
    "parallel_output": True,
    "pool_token": "cls",
    "relative_encoding": False,
    "spell_func": "lstm",
    "spell_length": None,
}
HUB_MLP_RATIO = 4  # the hub's GLM (as the official one) has no key for the MLP width: always 4 × hidden_size


def config_json(shape: mapping.Shape, heads: int, dropout: float, attention_dropout: float, dtype: str) -> dict:
    """The hub's config.json of a model of `shape` whose tensors are saved as `dtype` (keys sorted)."""
    check_mlp_ratio(shape.mlp_ratio)
    varying = {
        "num_layers": shape.num_layers,
        "hidden_size": shape.hidden,
        "num_attention_heads": heads,
        "vocab_size": shape.vocab_size,
        "max_sequence_length": shape.max_len,  # the position tables hold max_sequence_length + 1 rows
        "embedding_dropout_prob": dropout,
        "output_dropout_prob": dropout,
        "attention_dropout_prob": attention_dropout,
        "torch_dtype": dtype,
    }
    return dict(sorted({**FIXED_CONFIG, **varying}.items()))


def check_mlp_ratio(mlp_ratio: int) -> None:
    if mlp_ratio != HUB_MLP_RATIO:
        raise ValueError(
            f"The hub's GLM fixes the MLP at {HUB_MLP_RATIO} x hidden_size; this model's is {mlp_ratio} x "
            "(model.mlp_ratio): export it with --output FILE instead."
        )


def check_directory(directory: str, overwrite: bool) -> None:
    """Refuses, before any work, a `--hub` directory that would lose files or cannot be made."""
    if os.path.isfile(directory):
        raise ValueError(f"--hub {directory} is a file; name a directory.")
    if os.path.isdir(directory) and os.listdir(directory) and not overwrite:
        raise ValueError(
            f"--hub {directory} already exists and is not empty; choose a new directory, or add --overwrite "
            "to replace the hub's files in it (other files stay)."
        )
    parent = os.path.dirname(os.path.abspath(directory))
    if not os.path.isdir(parent):
        raise ValueError(f"--hub {directory}: the directory {parent} does not exist; create it first.")


def write_file(directory: str, name: str, write: Callable[[str], None]) -> str:
    """`write(path)` to a temporary file in `directory`, then renamed to `name`; returns `name`."""
    temporary = os.path.join(directory, f".{name}.tmp")
    try:
        write(temporary)
        os.chmod(temporary, _new_file_mode())  # safetensors makes its files private (0600)
        os.replace(temporary, os.path.join(directory, name))
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return name


def _new_file_mode() -> int:
    """The mode `open` gives a new file under the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_json(directory: str, name: str, obj) -> str:
    def write(path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
            f.write("\n")

    return write_file(directory, name, write)


def write_weights(directory: str, state_dict: dict[str, np.ndarray]) -> list[str]:
    """The hub-named state dict as pytorch_model.bin and model.safetensors; returns their names."""
    return [
        write_file(directory, WEIGHTS_BIN, lambda path: torch_format.save(state_dict, path)),
        write_file(
            directory,
            WEIGHTS_SAFETENSORS,
            lambda path: safetensors.numpy.save_file(state_dict, path, metadata={"format": "pt"}),
        ),
    ]


def weights_file(directory: str) -> str:
    """The weights file of a hub directory: model.safetensors where it has one, else pytorch_model.bin."""
    for name in (WEIGHTS_SAFETENSORS, WEIGHTS_BIN):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise ValueError(f"{directory} holds neither {WEIGHTS_SAFETENSORS} nor {WEIGHTS_BIN}: not a hub checkpoint.")


def load_safetensors(path: str) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file, as NumPy arrays (bfloat16 ones as ml_dtypes.bfloat16)."""
    import ml_dtypes  # noqa: F401 - registers bfloat16 with NumPy, which safetensors needs for BF16 tensors

    try:
        return safetensors.numpy.load_file(path)
    except (safetensors.SafetensorError, OSError) as error:
        raise ValueError(f"{path} is not a readable safetensors file ({error}).") from error


def read_heads(directory: str) -> int | None:
    """`num_attention_heads` of the directory's config.json (None without one)."""
    path = os.path.join(directory, CONFIG)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        heads = json.load(f).get("num_attention_heads")
    if not isinstance(heads, int):
        raise ValueError(f"{path} has no integer num_attention_heads; give --heads N.")
    return heads
