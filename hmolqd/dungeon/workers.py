"""Worker processes for the pure-Python part of whole dungeons: decoding plans, walking and playing dungeons,
writing their files.

Why: a batch's rooms come from one batched model call, where torch already uses every core (or the GPU). What
comes after (walking, playing and checking each dungeon, drawing each elite's map) is Python, one core at a
time, and was half of an illumination's time on the CPU. `Workers(n)` spreads such per-dungeon work over `n`
processes; `map` returns what the built-in `map` would, in order, so which process did the work never changes a
result (tests/test_illuminate_runs.py compares the archives).

- The pool starts on `start()` or on the first `map` of at least two items. A caller that takes a lock
  starts it first: a forked worker would hold the lock's inherited file as long as it lives.
- A worker ignores Ctrl-C (its parent stops the pool) and, on Linux, is killed when its parent dies, so a
  killed run leaves no process behind.
- Processes are forked where the platform can (Linux), so a worker starts at once and a user's script needs no
  `if __name__ == "__main__":` guard (forkserver and spawn run the main script again in every worker). A worker
  only runs Python and one-thread torch on CPU tensors: it never enters an OpenMP region or CUDA it inherited.
  Elsewhere (macOS, Windows) they are spawned, and a script needs that guard, as for any multiprocessing.
- Each worker runs torch on one thread: n workers on n cores, not n x n threads.
- Jobs and results travel as plain pickles (bytes): torch's own multiprocessing pickler would move every small
  tensor through shared memory, one file per tensor, which costs more than the work.
- `Workers(1)` (or 0) runs everything in this process, as a plain `map`.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
import signal
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

import torch

_PR_SET_PDEATHSIG = 1  # linux/prctl.h: the signal this process gets when its parent dies
T = TypeVar("T")
R = TypeVar("R")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which a container or `taskset` limits)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _init_worker(parent: int) -> None:
    """A worker runs torch on one thread, leaves Ctrl-C to its parent (which stops the pool) and dies with it:
    an orphan of a killed run would hold the inherited pipes (and whatever it holds) forever."""
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)


def _run_pickled(fn: Callable[[Any], Any], blob: bytes) -> bytes:
    return pickle.dumps([fn(x) for x in pickle.loads(blob)], protocol=pickle.HIGHEST_PROTOCOL)


def _context() -> Any:
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


class Workers:
    """A lazily started process pool with an order-keeping `map` (module docstring); a context manager."""

    def __init__(self, processes: int = 1) -> None:
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 0:
            raise ValueError(f"workers must be an int >= 0 (0 or 1: in this process), got {processes!r}")
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None

    @property
    def started(self) -> bool:
        return self._pool is not None

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        items = list(items)
        if self.processes <= 1 or len(items) < 2:
            return [fn(x) for x in items]
        self.start()
        assert self._pool is not None
        # a few pieces per worker: few round trips, and a slow dungeon does not hold one worker's whole share
        size = max(1, len(items) // (4 * self.processes))
        blobs = [
            pickle.dumps(items[i : i + size], protocol=pickle.HIGHEST_PROTOCOL) for i in range(0, len(items), size)
        ]
        futures = [self._pool.submit(_run_pickled, fn, blob) for blob in blobs]
        return [r for f in futures for r in pickle.loads(f.result())]

    def start(self) -> Workers:
        """Start the processes now (with more than one): before a lock is taken, so that no worker inherits it
        (a forked child holds its parent's flock until it exits)."""
        if self.processes > 1 and self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.processes, mp_context=_context(), initializer=_init_worker, initargs=(os.getpid(),)
            )
            self._pool.submit(int).result()  # the first task starts every worker at once (fork) or one (spawn)
        return self

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


IN_PROCESS = Workers(1)  # the default of every `workers=` of the dungeon pipeline: a plain map, no process
