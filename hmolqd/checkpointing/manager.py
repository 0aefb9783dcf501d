"""Checkpoints that never lose work: atomic, checksummed, weights-only files, rotated within a disk budget.

Files in `checkpoint_dir`
-------------------------
    checkpoint_latest.pt        with every save below, and alone by `save_latest` (stop request, end of stage)
    checkpoint_epoch_N.pt       every `checkpoint_every` epochs; N = epochs done in the stage
    checkpoint_step_N.pt        every `checkpoint_every_steps` steps / `checkpoint_every_minutes`; N = global step
    checkpoint_best.pt          when `monitor_metric` improves (`monitor_mode` "min" or "max")

Epoch numbering restarts in each stage ("vqvae", "diffusion", "joint"). The diffusion stage, whose
length is the seed's `num_epochs`, keeps the seed's names above; the other stages put their name after
`checkpoint_` (`checkpoint_vqvae_epoch_N.pt`, `checkpoint_vqvae_step_N.pt`, `checkpoint_vqvae_best.pt`,
same for `joint`). So no two stages share a file, `keep_last_n` applies per stage and kind, and `best` is
per stage (each stage monitors a different loss). `latest` is shared: it is always the newest state.
`global_step` may count per stage or across stages: files are ranked by (stage order, global_step, mtime).

One file = one plain dict (no pickled classes, loads with `torch.load(weights_only=True)`). The trainer
passes `state` with at least `stage`, `epoch` (epochs done in the stage), `global_step`, `models`
({name: state_dict}, e.g. vqvae/diffusion/ema) and `config` (`Config.to_dict()`), and normally
`optimizer`, `scheduler`, `scaler` (state dicts), `rng` (`capture_rng_state()`), `data_order` (epoch seed
and position in the epoch), `history` (metrics per epoch) and `elapsed` (training seconds). The manager
adds `format`, `format_version`, `timestamp`, `torch_version`, `best_metric` ({stage: best value}, owned by
the manager: a `best_metric` in `state` is replaced), `monitor`, `run_id` (the run the file belongs to,
`hmolqd.checkpointing.identity`) and `integrity` (sha256 over every key, value and tensor byte, so a
truncated or bit-flipped file is detected).

Usage: the main rank opens the run (`hmolqd.training.session.open_checkpoints`: lock, `find_resume_checkpoint`,
`lineage.start_run`), then each epoch `save_epoch_end(state, metrics)` (epoch_N if due, best if improved, +
latest), each due step `save_step(state)`, on a stop `save_latest(state)`, and `flush()` before exiting
however training ends (it waits for the write in flight and raises its error).

One save writes its bytes once: the first name (latest) is written atomically (`hmolqd.atomic.atomic_write`:
temp file, fsync, os.replace, fsync folder) and the save's other names (epoch_N, step_N, best) are hard
links to that file, each moved into place with `os.replace` of a fresh link (`fileformat.write_linked`).
Replacing latest later never writes into the inode epoch_N shares: it gets a new file, and deleting
epoch_N (rotation, disk budget) only removes a name. Where the file system has no hard links each name
is its own copy (logged once). An earlier file is never touched until its replacement is on disk, and
any failure raises `CheckpointError`.

With `async_save=True` (`checkpoint_async`, the default in training) the training thread only snapshots the
state into reused host buffers (`hmolqd.checkpointing.writer`) and a background thread serialises,
checksums, fsyncs, renames and rotates. At most one save is in flight: the next save waits for it, or a
periodic step save is skipped (logged) while it runs. A write error is raised in the training thread at
the next save or at `flush()`, which the trainer calls before it exits (signal, time budget, OOM, end).
`stats` (`SaveStats`) tells what saving cost: time the training thread was blocked and time spent writing.
Rotation and the disk budget (what is deleted, and never) live in `hmolqd.checkpointing.retention`.
Resume logic lives in `hmolqd.checkpointing.resume` (and `.candidates`, `.lineage`, `.inputs`), loading into live
objects in `.restore`, RNG capture in `.rng`, the inference-only export in `.export`, the directory lock in `.lock`,
the run identity in `.identity`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hmolqd.atomic import TEMP_SUFFIX, stale_temp_files, temp_writer_pid
from hmolqd.checkpointing.fileformat import (
    LATEST,
    REQUIRED_STATE_KEYS,
    CheckpointError,
    checkpoint_name,
    finalize,
    mib,
    serialize,
    write_linked,
)
from hmolqd.checkpointing.retention import Retention, on_disk
from hmolqd.checkpointing.writer import BackgroundWriter, Snapshot
from hmolqd.config import Config, RunConfig, stage_names

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointPolicy:
    """When to save and what to keep (RunConfig's checkpoint keys)."""

    every_epochs: int = 1
    every_steps: int = 0  # 0 = off
    every_minutes: float = 0.0  # 0 = off
    keep_last_n: int = 3  # epoch files (and, separately, step files) kept per stage
    disk_budget_gb: float = 0.0  # 0 = off
    monitor_metric: str = "val_loss"
    monitor_mode: str = "min"

    @classmethod
    def from_run_config(cls, run: RunConfig) -> CheckpointPolicy:
        c = run.checkpoint
        return cls(
            c.checkpoint_every,
            c.checkpoint_every_steps,
            c.checkpoint_every_minutes,
            c.keep_last_n,
            c.disk_budget_gb,
            c.monitor_metric,
            c.monitor_mode,
        )


@dataclass
class SaveStats:
    """What saving has cost in this process (the trainer's end-of-run line and bench/ read these fields).

    saves                saves written (one per save call that was not skipped; links and copies included)
    skipped              periodic step saves skipped because the previous save was still being written (async)
    files                names written: each of latest / epoch_N / step_N / best counts once per save
    bytes_written        bytes that reached the disk: one payload per save, plus one per name where a hard
                         link was impossible and a copy was written
    blocked_seconds      time the training thread spent in save calls: the snapshot plus any wait for the
                         previous write (async), or the whole save (sync). Per save: blocked_seconds / saves
    max_blocked_seconds  the longest single block
    wait_seconds         the part of blocked_seconds spent waiting for the previous write to finish (async)
    write_seconds        time spent serialising, checksumming, writing, fsyncing, renaming and rotating: on the
                         background thread (async) or inside blocked_seconds (sync)
    flush_seconds        time `flush()` waited for the last write before the trainer exited
    last_size            bytes of the last payload (one checkpoint file)
    """

    saves: int = 0
    skipped: int = 0
    files: int = 0
    bytes_written: int = 0
    blocked_seconds: float = 0.0
    max_blocked_seconds: float = 0.0
    wait_seconds: float = 0.0
    write_seconds: float = 0.0
    flush_seconds: float = 0.0
    last_size: int = 0


class CheckpointManager:
    """Writes latest / epoch / step / best files, rotates them and keeps the disk budget.

    With `is_main=False` (a non-zero DDP rank) every save is a no-op and no step save is ever due.
    With `async_save=True` saves are written by a background thread (see the module docstring); call
    `flush()` before reading the files or exiting.
    """

    def __init__(
        self,
        checkpoint_dir: str | Path,
        policy: CheckpointPolicy | None = None,
        *,
        is_main: bool = True,
        clock: Callable[[], float] = time.monotonic,
        async_save: bool = False,
        run_id: str | None = None,
    ) -> None:
        self.dir = Path(checkpoint_dir)
        self.policy = policy or CheckpointPolicy()
        if self.policy.monitor_mode not in ("min", "max"):
            raise CheckpointError(f"monitor_mode {self.policy.monitor_mode!r}: must be 'min' or 'max'")
        self.is_main = is_main
        self.run_id = run_id
        self.async_save = async_save
        self.best: dict[str, float] = {}  # stage -> best monitored value so far
        self.stats = SaveStats()
        self._clock = clock
        self._last_save = clock()
        self._last_step_saved: tuple[str, int] | None = None
        self._writer = BackgroundWriter()
        self._snapshot = Snapshot()
        self._stats_lock = threading.Lock()
        self._skip_logged = False
        self._retention = Retention(
            self.dir, run_id, keep_last_n=self.policy.keep_last_n, disk_budget_gb=self.policy.disk_budget_gb
        )
        if is_main:
            self.dir.mkdir(parents=True, exist_ok=True)
            # a writer killed mid-write; the real files are intact
            for tmp in stale_temp_files(self.dir, f".*{TEMP_SUFFIX}"):
                log.info(
                    "removing stale temp file %s (its writer, pid %s, is gone: a save interrupted by a kill)",
                    tmp,
                    temp_writer_pid(tmp.name),
                )
                tmp.unlink(missing_ok=True)

    @classmethod
    def from_config(cls, cfg: Config, *, is_main: bool = True, run_id: str | None = None) -> CheckpointManager:
        return cls(
            cfg.resolved().paths.checkpoint_dir,
            CheckpointPolicy.from_run_config(cfg.run),
            is_main=is_main,
            async_save=cfg.run.checkpoint.checkpoint_async,
            run_id=run_id,
        )

    def restore(self, checkpoint: Mapping[str, Any]) -> None:
        """Adopt the best values of a resumed checkpoint (forgotten if the monitor changed: the config check warns)."""
        monitor = checkpoint.get("monitor", {})
        if monitor.get("metric") != self.policy.monitor_metric or monitor.get("mode") != self.policy.monitor_mode:
            log.info(
                "the checkpoint monitored %s/%s, now %s/%s: the best value starts over",
                monitor.get("metric"),
                monitor.get("mode"),
                self.policy.monitor_metric,
                self.policy.monitor_mode,
            )
            self.best = {}
            return
        self.best = {str(k): float(v) for k, v in dict(checkpoint.get("best_metric") or {}).items()}

    def improves(self, stage: str, value: float) -> bool:
        if value != value or value in (float("inf"), float("-inf")):  # NaN/inf never becomes the best
            return False
        if stage not in self.best:
            return True
        return value < self.best[stage] if self.policy.monitor_mode == "min" else value > self.best[stage]

    def save_epoch_end(
        self, state: Mapping[str, Any], metrics: Mapping[str, float] | None = None, *, last: bool = False
    ) -> list[Path]:
        """Write epoch_N (every `every_epochs`) and best (if `metrics[monitor_metric]` improved), each time
        with latest; an epoch with neither writes nothing, except the stage's `last` epoch, which writes latest
        alone (so a finished stage is never resumed from an earlier epoch).
        Returns the paths written (or being written)."""
        if not self.is_main:
            return []
        stage, epoch = _check_state(state)
        best = dict(self.best)
        names = []
        if epoch >= 1 and epoch % self.policy.every_epochs == 0:
            names.append(checkpoint_name(stage, "epoch", epoch))
        value = (metrics or {}).get(self.policy.monitor_metric)
        if value is not None and self.improves(stage, float(value)):
            best[stage] = float(value)
            names.append(checkpoint_name(stage, "best"))
        if not names and not last:
            return []
        paths = self.write(state, [LATEST, *names], best)
        self.best = best
        return paths

    def save_latest(self, state: Mapping[str, Any]) -> list[Path]:
        """Write latest only: on a stop request (signal, time budget) and at the end of a stage."""
        if not self.is_main:
            return []
        _check_state(state)
        return self.write(state, [LATEST], dict(self.best))

    def step_save_due(self, stage: str, global_step: int) -> bool:
        """True when `every_steps` divides `global_step` or `every_minutes` passed since the last save."""
        if not self.is_main or (stage, global_step) == self._last_step_saved:
            return False
        p = self.policy
        by_steps = p.every_steps > 0 and global_step > 0 and global_step % p.every_steps == 0
        by_time = p.every_minutes > 0 and self._clock() - self._last_save >= p.every_minutes * 60.0
        return by_steps or by_time

    def save_step(self, state: Mapping[str, Any], *, skippable: bool = False) -> list[Path]:
        """Write checkpoint_step_N.pt (N = state's global_step) and latest.

        `skippable=True` (periodic saves): while the previous save is still being written, skip this one
        (logged once per write in flight) instead of waiting. Stop and OOM saves are never skipped.
        """
        if not self.is_main:
            return []
        stage, _ = _check_state(state)
        step = int(state["global_step"])
        if skippable and self._writer.busy:
            self.stats.skipped += 1
            if not self._skip_logged:
                self._skip_logged = True
                log.info("step checkpoint at %s step %d skipped: the previous save is still being written", stage, step)
            return []
        paths = self.write(state, [checkpoint_name(stage, "step", step), LATEST], dict(self.best))
        self._last_step_saved = (stage, step)
        return paths

    def write(self, state: Mapping[str, Any], names: Sequence[str], best: Mapping[str, float]) -> list[Path]:
        """Write one save under `names` (bytes once, the other names linked), then rotate and keep the budget:
        inline, or on the background thread after a snapshot (async)."""
        start = time.perf_counter()
        monitor = {"metric": self.policy.monitor_metric, "mode": self.policy.monitor_mode}
        payload = {**state, "best_metric": dict(best), "monitor": monitor}
        if self.run_id is not None:
            payload["run_id"] = self.run_id
        waited = 0.0
        if self.async_save:
            waited = self._writer.wait()  # at most one in flight; raises the previous write's error here
            snap, event = self._snapshot.take(payload)
            self._skip_logged = False
            self._writer.submit(lambda: self._write_files(snap, list(names), event))
        else:
            self._write_files(payload, list(names), None)
        blocked = time.perf_counter() - start
        with self._stats_lock:
            st = self.stats
            st.blocked_seconds += blocked
            st.max_blocked_seconds = max(st.max_blocked_seconds, blocked)
            st.wait_seconds += waited
        self._last_save = self._clock()
        return [self.dir / name for name in names]

    def _write_files(self, payload: Mapping[str, Any], names: list[str], event: torch.cuda.Event | None) -> None:
        start = time.perf_counter()
        if event is not None:
            event.synchronize()  # the device-to-host copies of the snapshot are done
        data = serialize(finalize(payload))
        written = write_linked(self.dir, names, data)
        self.rotate()
        self.enforce_disk_budget()
        seconds = time.perf_counter() - start
        with self._stats_lock:
            st = self.stats
            st.saves += 1
            st.files += len(names)
            st.bytes_written += written
            st.write_seconds += seconds
            st.last_size = len(data)
        how = "linked" if written == len(data) else "copied"
        log.info(
            "saved %s (%s written once, other names %s, %.2f s%s)",
            ", ".join(names),
            mib(len(data)),
            how,
            seconds,
            " in the background" if self.async_save else "",
        )

    def flush(self) -> None:
        """Wait for the save in flight (async) and raise its error, if any; a no-op when nothing is in flight."""
        waited = self._writer.wait()
        with self._stats_lock:
            self.stats.flush_seconds += waited

    def on_disk(self) -> tuple[int, int, int]:
        """(files, distinct files, bytes) in checkpoint_dir now: hard links count once in the bytes; the lock
        and temp files are left out."""
        return on_disk(self.dir)

    def rotate(self) -> list[Path]:
        """Keep the newest `keep_last_n` epoch and step files of this run per stage (`retention.Retention.rotate`)."""
        return self._retention.rotate()

    def enforce_disk_budget(self) -> list[Path]:
        """Delete this run's oldest epoch/step files until the folder fits `disk_budget_gb`
        (`retention.Retention.enforce_disk_budget`)."""
        return self._retention.enforce_disk_budget()


def _check_state(state: Mapping[str, Any]) -> tuple[str, int]:
    missing = [k for k in REQUIRED_STATE_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint state lacks required keys {missing} (has {sorted(state)})")
    if state["stage"] not in stage_names():
        raise CheckpointError(f"checkpoint state stage {state['stage']!r}: must be one of {stage_names()}")
    return state["stage"], int(state["epoch"])
