"""Restart cost of the training stream against its position: the saved tf.data iterator state
(what checkpoints hold now) beside replaying the pipeline up to the position (`ds.skip`, before).

    python -m benchmarks.data_restart [--positions 0,10000,100000,1000000] [--replay_up_to 100000]
                                      [--states /tmp/glm_restart_states]

The default task with glm_tiny's shapes (16 x 128 rows), as `glm_jax.train` reads it. Phase 1
draws the stream once up to the largest position, saving the iterator at each position and the
next batches (a slow pass, ~30 minutes to 1M batches on one core; kept in --states and reused).
Phase 2 times, per position, a fresh stream restored from its state until its first batch, checks
that the next batches equal those of the uninterrupted pass, and times the replay (skip) for
positions up to --replay_up_to; larger replays are projected from the measured rate.
"""

import argparse
import hashlib
import json
import os
import pathlib
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from glm_jax.config import DEFAULT_TASK  # noqa: E402
from glm_jax.data import pipeline  # noqa: E402

CHECKED = 3  # batches compared after each restart


def _stream(position=0):
    return pipeline.TrainStream(DEFAULT_TASK, 128, 16, seed=0, position=position)


def _digest(batch) -> str:
    digest = hashlib.sha256()
    for key in sorted(batch):
        digest.update(np.asarray(batch[key]).tobytes())
    return digest.hexdigest()


def prepare(states: pathlib.Path, positions: list[int]) -> None:
    """Phase 1: iterator states and the batches that follow them, for positions not yet saved."""
    if all((states / f"{p}.json").exists() for p in positions):
        return
    stream, start = _stream(), time.perf_counter()
    for position in sorted(positions):
        while stream.position < position:
            next(stream)
            if stream.position % 100_000 == 0:
                rate = stream.position / (time.perf_counter() - start)
                print(f"  drawn {stream.position:,} batches ({rate:,.0f}/s)", flush=True)
        tf.train.Checkpoint(iterator=stream.iterator()).write(str(states / f"{position}"))
        following = [_digest(next(stream)) for _ in range(CHECKED)]
        (states / f"{position}.json").write_text(json.dumps(following))
        stream = _resumed(states, position)  # continue past the checked batches without a gap


def _resumed(states, position):
    stream = _stream()
    tf.train.Checkpoint(iterator=stream.iterator()).read(str(states / f"{position}")).assert_consumed()
    stream.position = position
    return stream


def _time_first_batch(make) -> tuple[float, object, dict]:
    start = time.perf_counter()
    stream = make()
    batch = next(stream)
    return time.perf_counter() - start, stream, batch


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--positions", default="0,10000,100000,1000000")
    parser.add_argument("--replay_up_to", type=int, default=100_000)
    parser.add_argument("--states", default="/tmp/glm_restart_states")
    parser.add_argument("--prepare_only", action="store_true", help="phase 1 only (timings on a quiet machine later)")
    args = parser.parse_args()
    positions = [int(p) for p in args.positions.split(",")]
    states = pathlib.Path(args.states)
    states.mkdir(parents=True, exist_ok=True)
    prepare(states, positions)
    if args.prepare_only:
        return

    next(_stream())  # one-time process warm-up (the corpus, TensorFlow), kept out of every timing
    rows, rate = [], None
    for position in positions:
        restored, stream, batch = _time_first_batch(lambda p=position: _resumed(states, p))
        drawn = [_digest(batch)] + [_digest(next(stream)) for _ in range(CHECKED - 1)]
        same = drawn == json.loads((states / f"{position}.json").read_text())
        if position <= args.replay_up_to:
            replayed, _, batch = _time_first_batch(lambda p=position: _stream(p))
            same = same and _digest(batch) == drawn[0]
            if position:
                rate = position / replayed
            replay = f"{replayed:9.1f} s"
        else:
            replay = f"{position / rate:9.0f} s (projected at {rate:,.0f} batches/s)" if rate else "(not measured)"
        rows.append((position, restored, replay, same))
        print(f"position {position:>9,}: restored state {restored:6.2f} s | replay {replay} | same batches: {same}")
    print("\n| position (batches) | restart, saved iterator state | restart, replaying the pipeline | same stream |")
    print("|---:|---:|---:|---|")
    for position, restored, replay, same in rows:
        print(f"| {position:,} | {restored:.2f} s | {replay.strip()} | {same} |")


if __name__ == "__main__":
    main()
