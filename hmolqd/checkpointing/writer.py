"""Saving off the training thread: a snapshot into reused host buffers, written by one background thread.

The training thread only copies the state (`Snapshot.take`): every tensor into a host buffer kept from the
previous save (same key path, shape and dtype: no allocation, no page faults after the first save), pinned
when the source is on a GPU so the device-to-host copies run asynchronously behind a CUDA event. On the
CPU a copy is still needed, because training mutates its tensors in place. Plain values are rebuilt into
new containers (the history list keeps growing in the live state). The buffers are reused only after the
previous save is written, which `BackgroundWriter` guarantees: at most one save is in flight, `wait()`
joins it and re-raises its error (a `CheckpointError` with the usual message) in the calling thread.

The writer thread is not a daemon: a process that ends normally still finishes the file it is writing.
A SIGKILL mid-write leaves a temp file (removed by the next start, `hmolqd.atomic.stale_temp_files`)
and the previous checkpoints untouched, as a synchronous save would.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import torch

log = logging.getLogger(__name__)


class Snapshot:
    """Host copies of a state's tensors in buffers reused from one save to the next."""

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def take(self, state: Mapping[str, Any]) -> tuple[dict[str, Any], torch.cuda.Event | None]:
        """(a copy of `state` that shares no tensor or container with it, an event marking the end of the
        device-to-host copies or None). Read the copy only after `event.synchronize()`."""
        used: set[str] = set()
        on_gpu = [False]

        def copy(obj: Any, path: str) -> Any:
            if isinstance(obj, torch.Tensor):
                src = obj.detach()
                buf = self._buffers.get(path)
                if buf is None or buf.shape != src.shape or buf.dtype != src.dtype:
                    buf = torch.empty(src.shape, dtype=src.dtype, device="cpu", pin_memory=src.is_cuda)
                    self._buffers[path] = buf
                buf.copy_(src, non_blocking=src.is_cuda)
                on_gpu[0] |= src.is_cuda
                used.add(path)
                return buf
            if isinstance(obj, dict):  # OrderedDict state dicts keep their type and torch's _metadata
                out = (
                    type(obj)((k, copy(v, f"{path}/{k!r}")) for k, v in obj.items())
                    if isinstance(obj, OrderedDict)
                    else {k: copy(v, f"{path}/{k!r}") for k, v in obj.items()}
                )
                if isinstance(out, OrderedDict) and hasattr(obj, "_metadata"):
                    out._metadata = {k: dict(v) for k, v in obj._metadata.items()}  # type: ignore[attr-defined]
                return out
            if isinstance(obj, list):
                return [copy(v, f"{path}/{i}") for i, v in enumerate(obj)]
            if isinstance(obj, tuple):
                return tuple(copy(v, f"{path}/{i}") for i, v in enumerate(obj))
            return obj  # int, float, str, bool, None, dtype: immutable

        snap = {k: copy(v, repr(k)) for k, v in state.items()}
        for stale in set(self._buffers) - used:  # a new stage's optimizer: free the old stage's buffers
            del self._buffers[stale]
        event = None
        if on_gpu[0]:
            event = torch.cuda.Event()
            event.record()
        return snap, event

    @property
    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self._buffers.values())


class BackgroundWriter:
    """Runs one job at a time on a background thread; `wait()` blocks until it is done and re-raises its error.

    `wait()` is not interrupted by Ctrl-C: a KeyboardInterrupt that arrives while a checkpoint is being written
    is held until the file is complete (and re-raised then), so a second "Interrupt kernel" neither abandons
    the save with a half-written temp file nor lets the caller release the directory lock while the writer
    still runs. (`Thread.join` is not used for that wait: in CPython 3.11 a join interrupted by
    KeyboardInterrupt marks the thread stopped, so later joins return at once.)
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._done.set()
        self._error: BaseException | None = None

    @property
    def busy(self) -> bool:
        return not self._done.is_set()

    def submit(self, job: Callable[[], None]) -> None:
        self.wait()  # at most one in flight: its buffers may be reused only after it is written
        done = threading.Event()

        def run() -> None:
            try:
                job()
            except BaseException as err:  # handed to the training thread by wait(): nothing is swallowed
                self._error = err
            finally:
                done.set()

        self._done = done
        self._thread = threading.Thread(target=run, name="hmolqd-checkpoint-writer", daemon=False)
        self._thread.start()

    def wait(self) -> float:
        """Block until the job in flight is done; returns the seconds waited, raises the job's error (or a
        KeyboardInterrupt that arrived meanwhile, once the job is done)."""
        start = time.perf_counter()
        interrupted = _wait_through_interrupts(self._done)
        if self._thread is not None:
            interrupted |= _wait_through_interrupts(self._thread.join)  # returns at once: the job is done
            self._thread = None
        waited = time.perf_counter() - start
        if self._error is not None:
            err, self._error = self._error, None
            raise err
        if interrupted:
            raise KeyboardInterrupt
        return waited


def _wait_through_interrupts(done: threading.Event | Callable[[], Any]) -> bool:
    """Wait for `done` (an Event, or a join) whatever Ctrl-C says meanwhile; True if a KeyboardInterrupt came."""
    interrupted = False
    while True:
        try:
            if isinstance(done, threading.Event):
                while not done.wait(0.2):
                    pass
            else:
                done()
            return interrupted
        except KeyboardInterrupt:
            if not interrupted:
                log.warning(
                    "interrupted again while a checkpoint is being written: "
                    "the write is finished first, then training stops"
                )
            interrupted = True
