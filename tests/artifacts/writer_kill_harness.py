"""Run by test_writer: fork ModelWriter processes and SIGKILL them at random delays.

This is a fresh process that imports torch but runs no torch op itself, so forking it is safe (a
pytest process that already ran torch ops may hold thread pools that deadlock a forked child).
Usage: python -m tests.artifacts.writer_kill_harness ROOT TRIALS SEED
Prints one JSON line: {"duration": seconds of an unkilled write, "delays": [...], "killed": [...]}.
ROOT/calibrate*/out are written without a kill (the fastest one's time is the duration); ROOT/trialN/out are the killed runs.
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import signal
import sys
import time

import torch

from guard.artifacts import ModelWriter

N_TENSORS, TENSOR_ELEMS, SHARD_BYTES = 12, 1 << 16, 1 << 18  # 12 tensors of 256 KiB, one per shard


def expected(i: int) -> torch.Tensor:
    return torch.arange(TENSOR_ELEMS, dtype=torch.float32) + i


def _child(out: pathlib.Path, ready_w: int) -> None:
    try:
        os.write(ready_w, b"1")
        with ModelWriter(out, max_shard_bytes=SHARD_BYTES) as w:
            for i in range(N_TENSORS):
                w.add(f"t{i:02d}", expected(i))
            w.write_json("config.json", {"model_type": "llama"})
        os._exit(0)
    except BaseException:
        os._exit(1)


def run_once(out: pathlib.Path, kill_after: float | None) -> tuple[float, int]:
    out.parent.mkdir(parents=True, exist_ok=True)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        _child(out, w)
    os.read(r, 1)
    start = time.perf_counter()  # from the child's "ready", as the kill delay is: fork time is not write time
    os.close(r)
    os.close(w)
    if kill_after is not None:
        time.sleep(kill_after)
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return time.perf_counter() - start, os.waitstatus_to_exitcode(status)


def main() -> None:
    root, trials, seed = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    # The fastest of five unkilled writes: write times vary by 2x here (fsync), and kill points spread
    # over a slow write's duration would often land after a fast write had finished.
    durations = []
    for n in range(5):
        duration, code = run_once(root / ("calibrate" if n == 0 else f"calibrate-{n + 1}") / "out", None)
        if code != 0:
            sys.exit(f"calibration write failed with {code}")
        durations.append(duration)
    duration = min(durations)
    rng = random.Random(seed)
    delays, killed = [], []
    for trial in range(trials):
        delay = rng.uniform(0, 1.2 * duration)
        _, code = run_once(root / f"trial{trial}" / "out", delay)
        delays.append(delay)
        killed.append(code == -signal.SIGKILL)
    print(json.dumps({"duration": duration, "delays": delays, "killed": killed}))


if __name__ == "__main__":
    main()
