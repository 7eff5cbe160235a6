"""Writes the small PyTorch files under tests/data/ with the real `torch.save` (needs torch).

    python -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch numpy
    /tmp/torchvenv/bin/python -m scripts.make_torch_fixtures      # from the repository root

The files let tests check `glm_jax.official.torch_format` against what PyTorch itself writes, without
torch installed. Every value is a formula of `arange`, restated in tests/test_convert.py:

  torch_zip.pt, torch_legacy.pt   the same dict of tensors (fp32, fp16, bf16, int64, a transposed
                                  view, a slice at a storage offset, two views of one storage, a
                                  scalar), in the zip format (torch >= 1.6) and the legacy one
  mp_rank_00_model_states.pt      a training checkpoint (legacy format, fp16): a 1-layer official GLM
                                  state dict under 'module' beside an argparse.Namespace, an
                                  iteration and an optimizer state
"""

import argparse
import collections
import pathlib

import torch

from glm_jax.official.mapping import Shape, expected_shapes

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data"

# The tiny official GLM of mp_rank_00_model_states.pt: vocabulary rows, hidden, positions + 1.
V, H, P1 = 8, 4, 5
TINY = Shape(num_layers=1, hidden=H, vocab_size=V, max_len=P1 - 1, mlp_ratio=4)


def tensors():
    shared = torch.arange(10, dtype=torch.float32)
    return collections.OrderedDict(
        f32=torch.arange(6, dtype=torch.float32).reshape(2, 3) / 4,
        f16=torch.arange(4, dtype=torch.float16) - 1.5,
        bf16=torch.arange(5, dtype=torch.float32).to(torch.bfloat16) * 0.5,
        i64=torch.arange(3, dtype=torch.int64) * 1_000_000_007,
        transposed=torch.arange(12, dtype=torch.float32).reshape(3, 4).t(),
        offset=torch.arange(10, dtype=torch.float32)[3:7],
        shared_head=shared[:4],
        shared_tail=shared[4:].reshape(2, 3),
        scalar=torch.tensor(3.5),
    )


def training_checkpoint():
    module = collections.OrderedDict()
    for k, (name, shape) in enumerate(expected_shapes(TINY).items()):
        numel = int(torch.tensor(shape).prod())
        module[name] = ((torch.arange(numel, dtype=torch.float32) + 100 * k) / 64).reshape(shape).half()
    args = argparse.Namespace(num_layers=1, hidden_size=H, num_attention_heads=2, fp16=True)
    optimizer = {"state": {0: {"exp_avg": torch.ones(3), "step": 7}}, "param_groups": [{"lr": 1e-4}]}
    return {"module": module, "iteration": 7, "args": args, "optimizer": optimizer, "rng_state": (1, 2, 3)}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    torch.save(tensors(), OUT / "torch_zip.pt")
    torch.save(tensors(), OUT / "torch_legacy.pt", _use_new_zipfile_serialization=False)
    torch.save(training_checkpoint(), OUT / "mp_rank_00_model_states.pt", _use_new_zipfile_serialization=False)
    for path in sorted(OUT.glob("*.pt")):
        print(f"{path.name}: {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
