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
the manager: a `best_metric` in `state` is replaced), `monitor` and `integrity` (sha256 over every key,
value and tensor byte, so a truncated or bit-flipped file is detected).

Usage (main rank saves, every rank may load)::

    result = find_resume_checkpoint(cfg.paths.checkpoint_dir, resume_from=cfg.paths.resume_from,
                                    auto_resume=cfg.run.auto_resume, is_main=rt.is_main)
    log(result.message)
    mgr = CheckpointManager.from_config(cfg, is_main=rt.is_main)
    if result.checkpoint is not None:
        for msg in check_resume_config(result.checkpoint["config"], cfg): log(msg)
        load_training_state(result.checkpoint, models=model.parts(), optimizer=opt, scaler=scaler)
        restore_rng_state(result.checkpoint["rng"]); mgr.restore(result.checkpoint)
    ... each epoch:     mgr.save_epoch_end(state, metrics)   # epoch_N if due, best if improved, + latest
    ... each step:      if mgr.step_save_due(stage, global_step): mgr.save_step(state)   # step_N + latest
    ... on stop / end of stage:  mgr.save_latest(state)

Each name is a separate, complete copy (no hard links), so one damaged file leaves the others usable;
serialization happens once per save. Writes are atomic and durable (`hmolqd.atomic.atomic_write`: temp file, fsync, os.replace, fsync folder): an
earlier file is never touched until its replacement is on disk, and any failure raises `CheckpointError`.
Resume logic lives in `hmolqd.checkpointing.resume`, loading into live objects in `.restore`, RNG capture
in `.rng`, the inference-only export in `.export`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hmolqd.checkpointing.fileformat import (
    LATEST,
    REQUIRED_STATE_KEYS,
    TEMP_GLOB,
    CheckpointError,
    CheckpointFile,
    checkpoint_name,
    finalize,
    list_checkpoint_files,
    mib,
    serialize,
    write_atomic,
)
from hmolqd.config import STAGES, Config, RunConfig

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
        return cls(run.checkpoint_every, run.checkpoint_every_steps, run.checkpoint_every_minutes, run.keep_last_n,
                   run.disk_budget_gb, run.monitor_metric, run.monitor_mode)


@dataclass
class SaveStats:
    """What saving has cost in this process (for the share of training time spent checkpointing)."""

    saves: int = 0
    files: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    last_size: int = 0


class CheckpointManager:
    """Writes latest / epoch / step / best files, rotates them and keeps the disk budget.

    With `is_main=False` (a non-zero DDP rank) every save is a no-op and no step save is ever due.
    """

    def __init__(self, checkpoint_dir: str | Path, policy: CheckpointPolicy | None = None, *, is_main: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.dir = Path(checkpoint_dir)
        self.policy = policy or CheckpointPolicy()
        if self.policy.monitor_mode not in ("min", "max"):
            raise CheckpointError(f"monitor_mode {self.policy.monitor_mode!r}: must be 'min' or 'max'")
        self.is_main = is_main
        self.best: dict[str, float] = {}  # stage -> best monitored value so far
        self.stats = SaveStats()
        self._clock = clock
        self._last_save = clock()
        self._last_step_saved: tuple[str, int] | None = None
        if is_main:
            self.dir.mkdir(parents=True, exist_ok=True)
            for tmp in self.dir.glob(TEMP_GLOB):  # left by a process killed mid-write; the real files are intact
                log.info("removing stale temp file %s (a save interrupted by a kill)", tmp)
                tmp.unlink(missing_ok=True)

    @classmethod
    def from_config(cls, cfg: Config, *, is_main: bool = True) -> CheckpointManager:
        return cls(cfg.resolved().paths.checkpoint_dir, CheckpointPolicy.from_run_config(cfg.run), is_main=is_main)

    def restore(self, checkpoint: Mapping[str, Any]) -> None:
        """Adopt the best values of a resumed checkpoint (forgotten, with a warning, if the monitor changed)."""
        monitor = checkpoint.get("monitor", {})
        if monitor.get("metric") != self.policy.monitor_metric or monitor.get("mode") != self.policy.monitor_mode:
            log.warning("the checkpoint monitored %s/%s, now %s/%s: the best value starts over",
                        monitor.get("metric"), monitor.get("mode"), self.policy.monitor_metric, self.policy.monitor_mode)
            self.best = {}
            return
        self.best = {str(k): float(v) for k, v in dict(checkpoint.get("best_metric") or {}).items()}

    def improves(self, stage: str, value: float) -> bool:
        if value != value or value in (float("inf"), float("-inf")):  # NaN/inf never becomes the best
            return False
        if stage not in self.best:
            return True
        return value < self.best[stage] if self.policy.monitor_mode == "min" else value > self.best[stage]

    def save_epoch_end(self, state: Mapping[str, Any], metrics: Mapping[str, float] | None = None) -> list[Path]:
        """Write epoch_N (every `every_epochs`) and best (if `metrics[monitor_metric]` improved), each time
        with latest; an epoch with neither writes nothing. Returns the paths written."""
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
        if not names:
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

    def save_step(self, state: Mapping[str, Any]) -> list[Path]:
        """Write checkpoint_step_N.pt (N = state's global_step) and latest."""
        if not self.is_main:
            return []
        stage, _ = _check_state(state)
        step = int(state["global_step"])
        paths = self.write(state, [checkpoint_name(stage, "step", step), LATEST], dict(self.best))
        self._last_step_saved = (stage, step)
        return paths

    def write(self, state: Mapping[str, Any], names: Sequence[str], best: Mapping[str, float]) -> list[Path]:
        """Serialize once, write each name atomically (latest first), then rotate and keep the budget."""
        start = time.perf_counter()
        monitor = {"metric": self.policy.monitor_metric, "mode": self.policy.monitor_mode}
        data = serialize(finalize({**state, "best_metric": dict(best), "monitor": monitor}))
        paths = []
        for name in names:
            write_atomic(self.dir / name, data)
            paths.append(self.dir / name)
        self.rotate()
        self.enforce_disk_budget()
        seconds = time.perf_counter() - start
        self.stats.saves += 1
        self.stats.files += len(names)
        self.stats.bytes_written += len(data) * len(names)
        self.stats.seconds += seconds
        self.stats.last_size = len(data)
        self._last_save = self._clock()
        log.info("saved %s (%s each, %.2f s)", ", ".join(names), mib(len(data)), seconds)
        return paths

    def rotate(self) -> list[Path]:
        """Keep the newest `keep_last_n` epoch files and step files of each stage; never latest or best."""
        groups: dict[tuple[str | None, str], list[CheckpointFile]] = {}
        for f in list_checkpoint_files(self.dir):
            if f.kind in ("epoch", "step"):
                groups.setdefault((f.stage, f.kind), []).append(f)
        removed = []
        for files in groups.values():
            files.sort(key=lambda f: (_mtime_ns(f.path), f.n))
            removed += [f.path for f in files[: -self.policy.keep_last_n] if _remove(f.path, "rotation")]
        return removed

    def enforce_disk_budget(self) -> list[Path]:
        """Delete the oldest epoch/step files until checkpoint files fit `disk_budget_gb`; warn if they cannot."""
        budget = self.policy.disk_budget_gb * 1e9
        if budget <= 0:
            return []
        files = list_checkpoint_files(self.dir)
        total = sum(_size(f.path) for f in files)
        removable = sorted((f for f in files if f.kind in ("epoch", "step")), key=lambda f: (_mtime_ns(f.path), f.path.name))
        removed = []
        for f in removable:
            if total <= budget:
                break
            size = _size(f.path)
            if _remove(f.path, f"disk budget {self.policy.disk_budget_gb} GB"):
                total -= size
                removed.append(f.path)
        if total > budget:
            log.warning("checkpoint files in %s use %.3f GB, over disk_budget_gb=%s, with only latest and best left "
                        "(they are never deleted); raise the budget or free space", self.dir, total / 1e9, self.policy.disk_budget_gb)
        return removed


def _check_state(state: Mapping[str, Any]) -> tuple[str, int]:
    missing = [k for k in REQUIRED_STATE_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint state lacks required keys {missing} (has {sorted(state)})")
    if state["stage"] not in STAGES:
        raise CheckpointError(f"checkpoint state stage {state['stage']!r}: must be one of {STAGES}")
    return state["stage"], int(state["epoch"])


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _remove(path: Path, why: str) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as err:
        log.warning("could not delete %s (%s): %s", path, why, err)
        return False
    log.info("deleted %s (%s)", path.name, why)
    return True
