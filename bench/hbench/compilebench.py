"""`torch.compile` on vs off, measured on the sampling denoiser's forward (the EMA DiT, classifier-free
guidance batch: conditional and unconditional rows together), in inference mode, fp32 as `generate` runs it.

hmolqd never calls `torch.compile`, so eager is the default; the result says which is faster here and
whether that default should change on this device. A compile that fails is recorded with its error.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import nn

from hbench.suite import Context
from hmolqd.config import Config
from hmolqd.models.denoiser import COND_VALUES
from hmolqd.models.room_model import RoomModel

TIE = 0.05  # a speedup within 5 % either way is a tie on a timer this noisy: eager stays


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forwards(
    fns: dict[str, nn.Module], args: tuple[torch.Tensor, ...], iters: int, device: torch.device
) -> dict[str, float]:
    """Median milliseconds of one forward of each fn, the fns called in turn at every iteration (so a load that
    changes on a shared machine hits both alike), after two warm-up calls each."""
    for fn in fns.values():
        for _ in range(2):
            fn(*args)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn(*args)
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def compile_speed(ctx: Context, cfg: Config, model: RoomModel | None = None) -> dict[str, Any]:
    device, s = ctx.device, ctx.sizes
    model = (model if model is not None else RoomModel.from_config(cfg)).to(device).eval()
    denoiser = model.sampling_denoiser()
    g = torch.Generator().manual_seed(0)
    b = s.compile_batch
    cond = torch.randint(0, COND_VALUES, (b, model.diffusion.cond_size), generator=g).to(device)  # (B, K)
    if model.cfg.model_kind == "discrete":  # code indices, [MASK] included -> code logits
        grid = model.vqvae.latent_shape[1:]
        # (B, h, w)
        args: tuple[torch.Tensor, ...] = (
            torch.randint(0, model.cfg.num_embeddings + 1, (b, *grid), generator=g).to(device),
            cond,
        )
    else:
        grid = model.diffusion.latent_shape
        x = torch.randn((b, *grid), generator=g).to(device)  # (B, C, h, w)
        t = torch.randint(0, model.cfg.num_timesteps, (b,), generator=g).to(device)  # (B,)
        args = (x, t, cond)
    out: dict[str, Any] = {
        "batch": b,
        "iters": s.compile_iters,
        "backend": s.compile_backend,
        "model_kind": model.cfg.model_kind,
        "latent_shape": list(grid),
        "package_default": "eager (hmolqd never calls torch.compile)",
    }
    with torch.inference_mode():
        reference = denoiser(*args)
        try:
            compiled = torch.compile(denoiser, backend=s.compile_backend)
            _sync(device)
            start = time.perf_counter()
            result = compiled(*args)  # the first call compiles
            _sync(device)
            out["compile_s"] = time.perf_counter() - start
            out["max_abs_diff_vs_eager"] = float((result.float() - reference.float()).abs().max())
        except Exception as err:  # inductor raises many types (no compiler, unsupported op); the failure is the result
            out["error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            compiled = None
        fns = {"eager": denoiser} if compiled is None else {"eager": denoiser, "compiled": compiled}
        out.update({f"{name}_ms": ms for name, ms in time_forwards(fns, args, s.compile_iters, device).items()})
    if compiled is None:
        out["faster"] = "eager (compile failed)"
    else:
        out["speedup"] = out["eager_ms"] / out["compiled_ms"]
        out["faster"] = (
            "compile"
            if out["speedup"] > 1 + TIE
            else "eager"
            if out["speedup"] < 1 - TIE
            else f"tie (within {TIE:.0%})"
        )
    out["default_kept"] = "eager"
    if out["faster"] == "compile":
        # Forwards of this batch that repay the compilation; a generate(model, 1000) call of the default discrete
        # model makes 8 steps x 4 chunks of 256 rooms = 32 forwards of 512 rows (cond + uncond).
        out["break_even_forwards"] = out["compile_s"] / ((out["eager_ms"] - out["compiled_ms"]) / 1000)
    out["verdict"] = (
        f"compile measured {out['speedup']:.2f}x faster per forward after {out['compile_s']:.0f} s of compilation, "
        f"repaid after {out['break_even_forwards']:.0f} forwards of batch {b}; the package has no compile option, "
        "so eager stays its default"
        if out["faster"] == "compile"
        else f"{out['faster']}: eager, the package's default, stays"
    )
    return out
