"""Every global random generator's state as plain data, so a checkpoint holding it loads with
`torch.load(weights_only=True)`.

`capture_rng_state()` returns `{"python", "numpy", "torch", "cuda"}`: python's `random` (Mersenne Twister,
625 ints) and numpy's legacy global generator (624 uint32 keys) as int64 tensors plus plain ints/floats/strs
(numpy's own state tuple holds an ndarray, which a weights-only load refuses), torch's CPU state (uint8
tensor) and one uint8 tensor per CUDA device. `restore_rng_state(state)` puts them back, so the numbers
drawn after a restore equal those drawn after the capture.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

_PY_STATE_LEN = 625  # MT19937's 624 words + the position index (CPython's random.getstate())


def capture_rng_state() -> dict[str, Any]:
    """Snapshot of python `random`, numpy's global generator, torch CPU and every CUDA device."""
    py_version, py_internal, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state(legacy=True)
    # CUDA generators are queried only once CUDA is in use: a CPU run on a GPU machine creates no context.
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return {
        "python": {
            "version": int(py_version),
            "state": torch.tensor(py_internal, dtype=torch.int64),
            "gauss_next": py_gauss,
        },
        "numpy": {
            "bit_generator": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),  # (624,) uint32 values widened to int64
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": [s.cpu() for s in cuda],
    }


def restore_rng_state(state: dict[str, Any]) -> list[str]:
    """Restore a `capture_rng_state()` snapshot; returns (and logs) notes such as a CUDA device-count change.

    Raises ValueError naming the part (`rng.python`, ...) when the snapshot is malformed.
    """
    for part in ("python", "numpy", "torch"):
        if part not in state:
            raise ValueError(f"rng state lacks {part!r} (has {sorted(state)})")
    py = state["python"]
    internal = tuple(int(v) for v in torch.as_tensor(py["state"]).tolist())
    if len(internal) != _PY_STATE_LEN:
        raise ValueError(f"rng.python.state has {len(internal)} values, expected {_PY_STATE_LEN}")
    random.setstate((int(py["version"]), internal, py["gauss_next"]))

    npy = state["numpy"]
    keys = torch.as_tensor(npy["keys"]).cpu().numpy().astype(np.uint32)
    np.random.set_state(
        (str(npy["bit_generator"]), keys, int(npy["pos"]), int(npy["has_gauss"]), float(npy["cached_gaussian"]))
    )

    # set_rng_state wants a CPU ByteTensor; a map_location="cuda" load would have moved it.
    torch.set_rng_state(torch.as_tensor(state["torch"]).cpu().to(torch.uint8))

    notes: list[str] = []
    saved_cuda = list(state.get("cuda", []))
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for index in range(min(len(saved_cuda), available)):
        torch.cuda.set_rng_state(torch.as_tensor(saved_cuda[index]).cpu().to(torch.uint8), device=index)
    if len(saved_cuda) != available and saved_cuda:
        notes.append(
            f"the checkpoint holds RNG states of {len(saved_cuda)} CUDA device(s) and this machine has {available}: "
            f"restored {min(len(saved_cuda), available)}; CUDA random numbers will differ from the original run"
        )
    for note in notes:
        log.warning(note)
    return notes
