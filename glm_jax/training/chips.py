"""Accelerator chips by JAX's `device_kind`: dense bf16 peak FLOP/s (for MFU) and HBM (does a step fit?),
from the vendors' specifications."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Chip:
    peak_flops: float  # dense bf16 FLOP/s per device
    hbm_gib: float  # memory per device


CHIPS = {
    "TPU v4": Chip(275e12, 32),
    "TPU v5 lite": Chip(197e12, 16),  # v5e
    "TPU v5e": Chip(197e12, 16),
    "TPU v5": Chip(459e12, 95),  # v5p
    "TPU v5p": Chip(459e12, 95),
    "TPU v6 lite": Chip(918e12, 32),  # v6e (Trillium)
    "TPU v6e": Chip(918e12, 32),
    "NVIDIA H100": Chip(989e12, 80),  # SXM ("NVIDIA H100 80GB HBM3")
    "NVIDIA H100 PCIe": Chip(756e12, 80),
    "NVIDIA H100 NVL": Chip(835e12, 94),
    "NVIDIA H200": Chip(989e12, 141),  # SXM
    "NVIDIA H200 NVL": Chip(835e12, 141),
}


def chip(device_kind: str) -> Chip | None:
    """The chip whose name starts `device_kind` (the longest such name: 'TPU v5 lite' before 'TPU v5'), or None."""
    for name in sorted(CHIPS, key=len, reverse=True):
        if device_kind.startswith(name):
            return CHIPS[name]
    return None
