"""Helpers for tests of the infilling transforms: batches to per-row arrays, and rows rebuilt from examples."""

import collections

import numpy as np


def examples_of(batch):
    """A dict of ragged `[R, (m)]` fields → R dicts of NumPy arrays."""
    lists = {k: v.to_list() for k, v in batch.items()}
    return [{k: np.array(v[i]) for k, v in lists.items()} for i in range(len(lists["inputs"]))]


def rebuild_row(example, markers, eop):
    """The text an example was built from: each blank marker of Part A replaced by its Part B span."""
    fills = collections.defaultdict(list)
    for target, span in zip(example["targets"], example["span_ids"], strict=True):
        if span and target != eop:
            fills[span].append(int(target))
    text, blank = [], 0
    for token in example["inputs"][example["span_ids"] == 0].tolist():
        if token in markers:
            blank += 1
            text += fills[blank]
        else:
            text.append(token)
    return text
