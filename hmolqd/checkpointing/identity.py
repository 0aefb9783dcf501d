"""Run identity: which run a checkpoint directory belongs to, so that a fresh process resumes its own files.

`run.json` in `checkpoint_dir` is written atomically once, when a run starts (a new directory, an explicit
`resume_from`, or `auto_resume=False`), and kept across resumes:

    {"format": "hmolqd-run", "run_id": "3f2a...", "created": "2025-...", "host": "...",
     "seeded_from": null | {"path": "/abs/checkpoint_latest.pt", "run_id": ..., "stage": ...,
                           "global_step": ..., "sha256": ...}}

The manager records `run_id` in every checkpoint it writes. `hmolqd.checkpointing.resume` resumes only
files of the directory's run when it has any, and remembers in `seeded_from` which `resume_from` file
started the run, so that a re-run with the same `resume_from` continues the run's newer files instead of
starting over from that file. Checkpoints written before run ids existed (hmolqd 0.1.0) carry none: they
still resume, as files of the run in the directory they lie in.
"""

from __future__ import annotations

import json
import logging
import socket
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hmolqd.atomic import atomic_write_text
from hmolqd.checkpointing.fileformat import CheckpointError
from hmolqd.checkpointing.lock import RUN_INFO_NAME

log = logging.getLogger(__name__)

RUN_FORMAT = "hmolqd-run"


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    created: str
    host: str
    seeded_from: dict[str, Any] | None = None  # the resume_from file that started this run, if any

    @classmethod
    def new(cls, seeded_from: dict[str, Any] | None = None, run_id: str | None = None) -> RunInfo:
        return cls(
            run_id or new_run_id(),
            datetime.now(timezone.utc).isoformat(timespec="seconds"),
            socket.gethostname(),
            seeded_from,
        )

    def seeded_by(self, path: str | Path) -> bool:
        """True when `path` (resolved) is the resume_from file that started this run."""
        return bool(self.seeded_from) and self.seeded_from.get("path") == str(Path(path).resolve())


def new_run_id() -> str:
    return uuid.uuid4().hex


def seed_record(path: str | Path, ckpt: dict[str, Any]) -> dict[str, Any]:
    """What `seeded_from` keeps about a resume_from file: where it was and which state it held."""
    return {
        "path": str(Path(path).resolve()),
        "run_id": ckpt.get("run_id"),
        "stage": ckpt.get("stage"),
        "global_step": ckpt.get("global_step"),
        "sha256": (ckpt.get("integrity") or {}).get("sha256"),
    }


def read_run_info(folder: str | Path) -> RunInfo | None:
    """The run.json of `folder`, or None when there is none; a damaged one is logged and treated as absent."""
    path = Path(folder) / RUN_INFO_NAME
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("format") != RUN_FORMAT or not isinstance(raw.get("run_id"), str):
            raise ValueError(f"format {raw.get('format')!r}, run_id {raw.get('run_id')!r}")
        return RunInfo(raw["run_id"], str(raw.get("created", "?")), str(raw.get("host", "?")), raw.get("seeded_from"))
    except (OSError, ValueError, AttributeError) as err:
        log.warning("ignoring %s: unreadable (%s); the run id is taken from the checkpoints", path, err)
        return None


def write_run_info(folder: str | Path, info: RunInfo) -> Path:
    path = Path(folder) / RUN_INFO_NAME
    try:
        atomic_write_text(path, json.dumps({"format": RUN_FORMAT, **asdict(info)}, indent=1) + "\n")
    except OSError as err:
        raise CheckpointError(f"cannot write {path}: {err.strerror or err}") from err
    return path
