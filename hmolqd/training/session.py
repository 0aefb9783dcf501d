"""What a training session does with its checkpoint directory around the loop: check and lock it, choose
the checkpoint to resume (and the run it belongs to), and report what checkpointing cost.

`open_checkpoints` runs before any training. On the main rank: `check_checkpoint_dir` (exists or creatable,
writable, no directory under a checkpoint name) for checkpoint_dir and output_dir, a `DirLock` on each (one
training per directory; a stale lock of a dead process is taken over and said so), `find_resume_checkpoint`,
then `hmolqd.checkpointing.lineage.start_run` (other runs' files set aside, an input's files copied in,
`run.json` for a new run) and `outputs.claim_output_dir` (another run's outputs set aside). Under DDP
the main rank's choice (file and run id, or its error) is broadcast, so every rank loads the same file and
no rank waits forever for a main rank that refused to start.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch.distributed as dist

from hmolqd.checkpointing.fileformat import CheckpointError, load_checkpoint
from hmolqd.checkpointing.identity import read_run_info
from hmolqd.checkpointing.lineage import start_run
from hmolqd.checkpointing.lock import DirLock, check_checkpoint_dir
from hmolqd.checkpointing.manager import CheckpointManager
from hmolqd.checkpointing.resume import ResumeResult, find_for_config
from hmolqd.config import Config
from hmolqd.training import outputs
from hmolqd.training.runtime import Runtime


def open_checkpoints(cfg: Config, rt: Runtime, say: Callable[[str], None]) -> tuple[list[DirLock], ResumeResult]:
    """(the directory locks, held by the main rank until `release_all`, or []; the resume choice)."""
    locks: list[DirLock] = []
    found, error = None, None
    paths = cfg.paths
    if rt.is_main:
        try:
            locks.append(DirLock(check_checkpoint_dir(paths.checkpoint_dir)).acquire())
            # two trainings must not write one output_dir either
            if not _same_folder(paths.output_dir, paths.checkpoint_dir):
                locks.append(DirLock(check_checkpoint_dir(paths.output_dir, "output_dir"), "output_dir").acquire())
            for lock in locks:
                if lock.took_over:
                    say(lock.took_over)
            # before run.json is rewritten (output_dir may be checkpoint_dir)
            previous_outputs = read_run_info(paths.output_dir)
            found = start_run(paths.checkpoint_dir, find_for_config(cfg))
            for note in outputs.claim_output_dir(
                paths.output_dir, paths.checkpoint_dir, found.run_id, previous_outputs
            ):
                say(note)
        except Exception as err:  # re-raised below, after the other ranks have heard of it
            error = err
            release_all(locks)
    if rt.distributed:
        choice = [
            str(found.path) if found and found.path else None,
            found.run_id if found else None,
            str(error) if error else None,
        ]
        dist.broadcast_object_list(choice, src=0)
        if not rt.is_main:
            path, run_id, message = choice
            if message is not None:
                raise CheckpointError(f"the main rank could not start: {message}")
            ckpt = load_checkpoint(path) if path else None
            return [], ResumeResult(Path(path) if path else None, ckpt, "", run_id=run_id or "")
    if error is not None:
        raise error
    assert found is not None
    return locks, found


def release_all(locks: list[DirLock]) -> None:
    for lock in reversed(locks):
        lock.release()


def _same_folder(a: str | Path, b: str | Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def checkpoint_report(manager: CheckpointManager, session_seconds: float) -> str:
    """The end-of-run line: saves, what the folder holds now (hard links counted once) and the time it cost."""
    st = manager.stats
    files, distinct, size = manager.on_disk()
    per_save = st.blocked_seconds / st.saves if st.saves else 0.0
    skipped = f" ({st.skipped} step saves skipped while one was being written)" if st.skipped else ""
    where = "in the background" if manager.async_save else "inline"
    return (
        f"checkpointing: {st.saves} saves{skipped}, {st.bytes_written / 2**20:.1f} MiB written; "
        f"{manager.dir} holds {files} files ({distinct} distinct, {size / 2**20:.1f} MiB on disk); "
        f"training waited {st.blocked_seconds:.1f} s ({1000 * per_save:.0f} ms per save) = "
        f"{100 * st.blocked_seconds / max(session_seconds, 1e-9):.1f} % of this session's {session_seconds:.0f} s; "
        f"writing took {st.write_seconds:.1f} s {where}"
    )
