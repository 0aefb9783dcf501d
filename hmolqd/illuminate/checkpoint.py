"""An illumination's checkpoint, `archive.pt`: written atomically after every batch, with a checksum.

**Format.** The run's `State` (the pyribs scheduler: archive and emitters with their random states; the elites'
dungeons; the counters; the settings; a last partial batch; what the outputs last wrote) is serialized with
`torch.save` into bytes, and those bytes are stored as one uint8 tensor in a training-style checkpoint file
(`hmolqd.checkpointing.fileformat`: format `hmolqd-archive`, `integrity` = sha256 over every byte of that
tensor and every other value, written with `write_atomic`, read with `load_checkpoint`, which recomputes the
digest). So a flipped bit anywhere in the state is refused before anything in it is used, like a damaged
training checkpoint, and a full disk is one line that says how much space the file needs.

**Loading.** Both layers are read with `torch.load(weights_only=True)`. The state holds objects, so its load
allows their classes by name (`safe_globals()`: the pyribs and hmolqd classes a run holds, numpy's arrays,
dtypes and random generators, `frozenset`) and nothing else: they are rebuilt from their data without running
their code, and a file that names any other global (a pickled function call, say) is refused with that
global's name, nothing in it run. The state is then checked field by field (`check_state`, down to the
number of knobs of its genomes: an archive of a search with another genome is refused), so a file that
loads but holds something else is a one-line error too. A bad file is never replaced: the error says so, and
the run stops. An `archive.pkl` (hmolqd's pickle before this format) is never unpickled.

**Identity.** A run resumes only with the same settings, and `settings["model"]` is the room model's identity:
the sha256 of its weights (`source_identity`, the digest training checkpoints carry, over the weights alone),
so another model with the same sampling settings cannot extend an archive.
"""

from __future__ import annotations

import importlib
import io
import pickle  # for its error class only: nothing here unpickles with pickle
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hmolqd.checkpointing.fileformat import (
    ARCHIVE_FORMAT,
    CheckpointError,
    finalize,
    load_checkpoint,
    load_error_reason,
    serialize,
    state_digest,
    write_atomic,
)
from hmolqd.dungeon.build import Dungeon
from hmolqd.illuminate.archive import IlluminateError, check_descriptors

CHECKPOINT_NAME = "archive.pt"
CHECKPOINT_VERSION = 3  # of the state inside: 2 was a bare torch.save of it (no checksum), refused
LEGACY_CHECKPOINT_NAME = "archive.pkl"  # version 1, a pickle: refused, never loaded (module docstring)
SETTING_KEYS = ("mode", "descriptors", "seed", "batch_size", "chunks", "source", "model", "config", "sampling")


@dataclass
class State:
    """Everything a resumed illumination needs (module docstring)."""

    settings: dict[str, Any]
    scheduler: Any
    evaluations: int  # dungeons told to the scheduler: whole batches only (a last partial batch is `tail`)
    batches: int
    elites: dict[int, Dungeon]  # archive cell -> the elite's dungeon
    beaten: dict[int, bool]  # archive cell -> its elite was beaten
    history: list[dict[str, Any]]
    counts: dict[str, float]  # beaten before / after regeneration, rooms regenerated, seconds evaluating
    # The last batch when the run's evaluations end part-way through one: {"solutions": (k, d) array, "dungeons":
    # [k Dungeon], "seconds": float}. It is evaluated on a copy of the scheduler and never told, so the state
    # above stays the one after whole batches: a longer run goes on from there (the same archive as one run of
    # that length), and a re-run of this length adds the tail again instead of evaluating it (`hmolqd.illuminate.run`).
    tail: dict[str, Any] | None = None
    # What `hmolqd.illuminate.outputs` last wrote: {"cells": {cell: tag of its elite}, "sheets": tag}.
    written: dict[str, Any] = field(default_factory=dict)


# Classes a checkpoint may hold, by import path (module docstring). pyribs keeps some in private modules, so
# they are named as its installed version spells them; a name it lacks is left out (a file that needs it is
# then refused, naming it). hmolqd's own are the dataclasses of a `Dungeon` and the frontier emitter.
_SAFE_CLASS_NAMES: tuple[str, ...] = (
    "ribs.schedulers._scheduler.Scheduler",
    "ribs.archives._grid_archive.GridArchive",
    "ribs.archives._array_store.ArrayStore",
    "ribs.archives._archive_stats.ArchiveStats",
    "ribs.emitters._iso_line_emitter.IsoLineEmitter",
    "hmolqd.illuminate.frontier.FrontierIsoLineEmitter",
    "hmolqd.dungeon.build.Dungeon",
    "hmolqd.dungeon.build.Plan",
    "hmolqd.dungeon.embed.Embedding",
    "hmolqd.dungeon.layout.Layout",
    "hmolqd.dungeon.layout.Link",
    "hmolqd.dungeon.layout.Room",
    "hmolqd.dungeon.mission.MissionResult",
    "hmolqd.dungeon.rules.PlayResult",
    "hmolqd.dungeon.walk.WalkResult",
)
# numpy's dtypes that pyribs' arrays and counters use.
_NUMPY_TYPES = (np.bool_, np.int32, np.int64, np.uint32, np.uint64, np.float32, np.float64)


def _importable(name: str) -> Any | None:
    module, _, attr = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None


def safe_globals() -> list[Any]:
    """What `load_state` lets `torch.load(weights_only=True)` rebuild (module docstring)."""
    # numpy's reconstructors, found from live objects so that numpy 1's and 2's module paths both work.
    rebuilders = [
        np.zeros(1).__reduce__()[0],  # numpy.(_)core.multiarray._reconstruct
        np.int64(0).__reduce__()[0],  # numpy.(_)core.multiarray.scalar
        np.random.default_rng(0).__reduce__()[0],  # numpy.random._pickle.__generator_ctor
        np.random.PCG64(0).__reduce__()[0],  # numpy.random._pickle.__bit_generator_ctor
        np.random.SeedSequence(0).__reduce__()[0],  # numpy.random.bit_generator.__pyx_unpickle_SeedSequence
    ]
    numpy_types = [np.ndarray, np.dtype, np.random.PCG64, np.random.SeedSequence, *_NUMPY_TYPES]
    numpy_types += [type(np.dtype(t)) for t in _NUMPY_TYPES]
    classes = [c for c in map(_importable, _SAFE_CLASS_NAMES) if c is not None]
    return [*rebuilders, *numpy_types, *classes, frozenset]


def checkpoint_path(folder: Path) -> Path:
    """`folder`'s checkpoint; a folder holding only an earlier hmolqd's pickle (`archive.pkl`) is refused,
    so that a new run neither loads it nor writes over that run's files."""
    path = Path(folder) / CHECKPOINT_NAME
    legacy = Path(folder) / LEGACY_CHECKPOINT_NAME
    if not path.exists() and legacy.exists():
        raise IlluminateError(
            f"{legacy}: an archive of an earlier hmolqd (a pickle, not loaded: it could run code); "
            "use another --out, or move it away to start anew here"
        )
    return path


def source_identity(source: Any) -> str:
    """What identifies the rooms' source across runs: a room model by the sha256 of the weights its rooms come
    from (`state_digest`, as training checkpoints use it: the VQ-VAE, the diffusion module's own state and the
    denoiser sampling uses), so a model file with one denoiser or both is the same source; any other RoomSource
    by its name."""
    model = getattr(source, "model", None)
    if not callable(getattr(model, "sampling_denoiser", None)):
        return f"room source {source.name!r}"
    use_ema = bool(getattr(getattr(source, "settings", None), "use_ema", True))
    states = {
        "vqvae": model.vqvae.state_dict(),
        "diffusion": {k: v for k, v in model.diffusion.state_dict().items() if not k.startswith("denoiser.")},
        "denoiser": model.sampling_denoiser(use_ema).state_dict(),
    }
    return f"weights sha256 {state_digest({'models': states})}"


def save_state(path: Path, state: State, finished: Mapping[str, Any] | None = None) -> None:
    """Write `state` atomically as a checksummed checkpoint (module docstring); a failure (a full disk, say) is a
    one-line CheckpointError, and the previous file is left as it was. `finished`: the report of a run whose
    outputs are all on disk (`FINISHED_KEYS`, plain values), kept beside the state under the same digest, so a
    re-run reads it without unpickling the state or importing pyribs (`finished_report`)."""
    inner = io.BytesIO()
    torch.save({"version": CHECKPOINT_VERSION, **{f.name: getattr(state, f.name) for f in fields(State)}}, inner)
    blob = torch.frombuffer(bytearray(inner.getbuffer()), dtype=torch.uint8)
    payload: dict[str, Any] = {"archive": blob}
    if finished is not None:
        payload["finished"] = {key: finished[key] for key in FINISHED_KEYS}
    write_atomic(Path(path), serialize(finalize(payload, ARCHIVE_FORMAT)))


# A finished run's report: its settings, evaluations (a last partial batch included), archive statistics, and the
# files of `out` its outputs step wrote or found up to date (relative names).
FINISHED_KEYS = ("settings", "evaluations", "stats", "outputs")


def finished_report(path: Path) -> dict[str, Any] | None:
    """The `finished` record of the checkpoint at `path`, checked by the file's digest like all of it; None where
    the file has none (a run not finished, or its outputs not written) or cannot be read (the full load says
    why)."""
    if not Path(path).is_file():
        return None
    try:
        outer = load_checkpoint(path, "cpu", (ARCHIVE_FORMAT,))
    except CheckpointError:
        return None
    record = outer.get("finished")
    if not isinstance(record, dict) or set(record) != set(FINISHED_KEYS):
        return None
    if not isinstance(record["outputs"], list) or not all(isinstance(n, str) for n in record["outputs"]):
        return None
    if not _is_int(record["evaluations"]) or not isinstance(record["stats"], dict):
        return None
    return record


def _refused(path: Path, why: str) -> IlluminateError:
    return IlluminateError(
        f"{path}: {why}; the file is kept as it is: move it away (or use another --out) to start anew"
    )


def load_state(path: Path) -> State:
    """Read and verify a checkpoint (module docstring); anything that is not one is an `IlluminateError`
    naming the file, and the file is left as it is."""
    path = Path(path)
    if path.name == LEGACY_CHECKPOINT_NAME:
        raise IlluminateError(f"{path}: a pickle checkpoint of an earlier hmolqd, not loaded (it could run code)")
    if path.exists() and not path.is_file():  # a FIFO would block the read for ever, a folder cannot be one
        raise _refused(path, "not a regular file, so not an archive checkpoint")
    try:
        outer = load_checkpoint(path, "cpu", (ARCHIVE_FORMAT,))
    except CheckpointError as err:
        raise _refused(path, f"not a valid archive checkpoint ({str(err).removeprefix(f'{path}: ')})") from None
    blob = outer["archive"]
    if not isinstance(blob, torch.Tensor) or blob.dtype != torch.uint8 or blob.dim() != 1:
        raise _refused(path, "malformed archive checkpoint (its 'archive' is not a byte tensor)")
    try:
        with torch.serialization.safe_globals(safe_globals()):
            raw = torch.load(io.BytesIO(blob.numpy().tobytes()), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, OSError, RuntimeError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise _refused(path, f"corrupted archive checkpoint ({load_error_reason(err)})") from None
    names = {f.name for f in fields(State)}
    if not isinstance(raw, dict) or raw.get("version") != CHECKPOINT_VERSION or set(raw) - {"version"} != names:
        raise _refused(path, f"not an archive checkpoint of version {CHECKPOINT_VERSION}")
    state = State(**{name: raw[name] for name in names})
    problem = check_state(state)
    if problem:
        raise _refused(path, f"malformed archive state ({problem})")
    return state


def _is_int(value: Any, low: int = 0) -> bool:
    return type(value) is int and value >= low


def _archive_problem(archive: Any, settings: Mapping[str, Any]) -> str | None:
    from ribs.archives import GridArchive

    if not isinstance(archive, GridArchive):
        return f"the archive is a {type(archive).__name__}, not a pyribs GridArchive"
    descs = check_descriptors(settings["descriptors"])
    if tuple(archive.dims) != tuple(d.bins for d in descs):
        return f"the archive's grid {tuple(archive.dims)} does not match its descriptors {settings['descriptors']}"
    return None


def _genome_problem(archive: Any) -> str | None:
    """An archive of genomes with another number of knobs than this hmolqd's (an earlier search's)."""
    from hmolqd.illuminate.genome import GENOME_DIM

    if archive.solution_dim != GENOME_DIM:
        return f"its genomes have {archive.solution_dim} knobs, this hmolqd's have {GENOME_DIM}: an earlier search's"
    return None


def check_state(state: State) -> str | None:
    """What is wrong with a loaded state, or None: each field's type and the archive's shape (module docstring)."""
    s = state.settings
    if not isinstance(s, dict) or set(s) != set(SETTING_KEYS):
        return f"settings: expected a dict with keys {list(SETTING_KEYS)}"
    if s["mode"] not in ("map-elites", "baseline") or not _is_int(s["batch_size"], 1) or not _is_int(s["seed"]):
        return f"settings: mode {s['mode']!r}, batch_size {s['batch_size']!r}, seed {s['seed']!r}"
    try:
        check_descriptors(s["descriptors"] if isinstance(s["descriptors"], list) else ())
    except IlluminateError as err:
        return f"settings: {err}"
    if s["mode"] == "map-elites":
        from ribs.schedulers import Scheduler

        if not isinstance(state.scheduler, Scheduler):
            return f"scheduler: a {type(state.scheduler).__name__}, not a pyribs Scheduler"
        problem = _archive_problem(state.scheduler.archive, s) or _genome_problem(state.scheduler.archive)
    else:
        problem = _archive_problem(state.scheduler, s)
    if problem:
        return problem
    if not _is_int(state.evaluations) or not _is_int(state.batches):
        return f"evaluations {state.evaluations!r} and batches {state.batches!r} must be ints >= 0"
    typed = (
        ("elites", state.elites, int, Dungeon),
        ("beaten", state.beaten, int, bool),
        ("counts", state.counts, str, (int, float)),
        ("written", state.written, str, object),
    )
    for name, value, key_type, value_type in typed:
        if not isinstance(value, dict) or not all(
            isinstance(k, key_type) and isinstance(v, value_type) for k, v in value.items()
        ):
            return f"{name}: expected a dict of {key_type.__name__} keys"
    if not isinstance(state.history, list) or not all(isinstance(r, dict) for r in state.history):
        return "history: expected a list of dicts"
    return _tail_problem(state.tail)


def _tail_problem(tail: Any) -> str | None:
    if tail is None:
        return None
    if not isinstance(tail, dict) or set(tail) != {"solutions", "dungeons", "seconds"}:
        return "tail: expected None or a dict of solutions, dungeons and seconds"
    sols, dungeons = tail["solutions"], tail["dungeons"]
    if not isinstance(sols, np.ndarray) or sols.ndim != 2 or not isinstance(dungeons, list):
        return "tail: solutions must be a 2-d array and dungeons a list"
    if len(sols) != len(dungeons) or not all(isinstance(d, Dungeon) for d in dungeons):
        return "tail: one dungeon per solution expected"
    return None
