"""What a training session does with its checkpoint directory around the loop: check and lock it, choose
the checkpoint to resume (and the run it belongs to), and report what checkpointing cost.

`open_checkpoints` runs before any training. On the main rank: `check_checkpoint_dir` (exists or creatable,
writable, no directory under a checkpoint name), `DirLock` (one training per directory; a stale lock of a
dead process is taken over and said so), `find_resume_checkpoint` and, for a new run, `run.json`. Under DDP
the main rank's choice (file and run id, or its error) is broadcast, so every rank loads the same file and
no rank waits forever for a main rank that refused to start.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch.distributed as dist

from hmolqd.checkpointing.fileformat import CheckpointError, load_checkpoint
from hmolqd.checkpointing.identity import write_run_info
from hmolqd.checkpointing.lock import DirLock, check_checkpoint_dir
from hmolqd.checkpointing.manager import CheckpointManager
from hmolqd.checkpointing.resume import ResumeResult, find_resume_checkpoint
from hmolqd.config import Config
from hmolqd.training.runtime import Runtime


def open_checkpoints(cfg: Config, rt: Runtime, say: Callable[[str], None]) -> tuple[DirLock | None, ResumeResult]:
    """(the directory lock, held by the main rank until `DirLock.release`, or None; the resume choice)."""
    lock, found, error = None, None, None
    if rt.is_main:
        try:
            lock = DirLock(check_checkpoint_dir(cfg.paths.checkpoint_dir)).acquire()
            if lock.took_over:
                say(lock.took_over)
            found = find_resume_checkpoint(cfg.paths.checkpoint_dir, resume_from=cfg.paths.resume_from, auto_resume=cfg.run.auto_resume)
            if found.run_info is not None:
                write_run_info(cfg.paths.checkpoint_dir, found.run_info)
        except Exception as err:  # re-raised below, after the other ranks have heard of it
            error = err
            if lock is not None:
                lock.release()
    if rt.distributed:
        choice = [str(found.path) if found and found.path else None, found.run_id if found else None, str(error) if error else None]
        dist.broadcast_object_list(choice, src=0)
        if not rt.is_main:
            path, run_id, message = choice
            if message is not None:
                raise CheckpointError(f"the main rank could not start: {message}")
            ckpt = load_checkpoint(path) if path else None
            return None, ResumeResult(Path(path) if path else None, ckpt, "", run_id=run_id or "")
    if error is not None:
        raise error
    assert found is not None
    return lock, found


def checkpoint_report(manager: CheckpointManager, session_seconds: float) -> str:
    """The end-of-run line: saves, what the folder holds now (hard links counted once) and the time it cost."""
    st = manager.stats
    files, distinct, size = manager.on_disk()
    per_save = st.blocked_seconds / st.saves if st.saves else 0.0
    skipped = f" ({st.skipped} step saves skipped while one was being written)" if st.skipped else ""
    where = "in the background" if manager.async_save else "inline"
    return (f"checkpointing: {st.saves} saves{skipped}, {st.bytes_written / 2**20:.1f} MiB written; {manager.dir} holds {files} files "
            f"({distinct} distinct, {size / 2**20:.1f} MiB on disk); training waited {st.blocked_seconds:.1f} s ({1000 * per_save:.0f} ms "
            f"per save) = {100 * st.blocked_seconds / max(session_seconds, 1e-9):.1f} % of this session's {session_seconds:.0f} s; "
            f"writing took {st.write_seconds:.1f} s {where}")
