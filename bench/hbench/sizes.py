"""How big each measurement is. `quick` must finish end to end in <= 10 minutes on a 2-core CPU (issue 13)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    name: str
    throughput_epochs: int  # epochs of every stage in the throughput run; the first and last are not timed (>= 3)
    ttq_epochs: tuple[int, int] | None  # (vqvae, diffusion) epochs of the time-to-quality run; None = the preset's
    ttq_sample_every: int  # epochs between in-training evaluations; 0 = the preset's (or a tenth of its epochs)
    ttq_eval_samples: int  # rooms per in-training evaluation; 0 = the preset's eval_samples
    sample_steps: tuple[int, ...]  # DDIM step counts measured for a continuous model (those above its T are skipped)
    discrete_steps: tuple[int, ...]  # unmasking step counts measured for a discrete model (its default is 8)
    batches: tuple[int, ...]  # batch sizes of the sampling throughput
    checkpoint_epochs: tuple[int, int]  # (vqvae, diffusion) epochs of each checkpoint run
    checkpoint_model: str  # "notebook": the notebook's CONFIG (the default model); "preset": --preset's model
    compile_batch: int  # rows of the denoiser forward timed with and without torch.compile
    compile_iters: int  # timed forwards after warm-up
    compile_backend: str  # torch.compile backend: "inductor" (the real measurement); "eager" traces only (plumbing)
    proxies: str  # what in this profile is a proxy for the full measurement ("" = nothing)


FULL = Sizes(
    "full",
    throughput_epochs=6,
    ttq_epochs=None,
    ttq_sample_every=0,
    ttq_eval_samples=0,
    sample_steps=(10, 25, 50),
    discrete_steps=(4, 8, 16),
    batches=(1, 8, 64, 256, 1024),
    checkpoint_epochs=(2, 3),
    checkpoint_model="notebook",
    compile_batch=512,
    compile_iters=20,
    compile_backend="inductor",
    proxies="",
)
QUICK = Sizes(
    "quick",
    throughput_epochs=3,
    ttq_epochs=(4, 10),
    ttq_sample_every=2,
    ttq_eval_samples=32,
    sample_steps=(10, 50),
    discrete_steps=(8,),
    batches=(1, 8, 64, 1000),
    checkpoint_epochs=(1, 2),
    checkpoint_model="notebook",
    compile_batch=256,
    compile_iters=10,
    compile_backend="inductor",
    proxies=(
        "quick-mode proxies: time to quality trains 4 VQ-VAE + 10 diffusion epochs and scores 32 rooms per "
        "evaluation (thresholds are rarely reached that early); sampling of the continuous model stops at 50 steps; "
        "throughput times 1 epoch per stage; checkpoint runs are 1 + 2 epochs; torch.compile is timed at batch 256, "
        "10 forwards"
    ),
)
# The smoke test's plumbing run: every section once, at sizes that take seconds with the smoke preset.
TINY = Sizes(
    "tiny",
    throughput_epochs=3,
    ttq_epochs=(1, 2),
    ttq_sample_every=1,
    ttq_eval_samples=8,
    sample_steps=(2,),
    discrete_steps=(2,),
    batches=(1, 4),
    checkpoint_epochs=(1, 2),
    checkpoint_model="preset",
    compile_batch=8,
    compile_iters=2,
    compile_backend="eager",
    proxies="tiny plumbing run: every number is meaningless",
)
# bench/gpu_check.py on one GPU: the default model, a time-to-quality run long enough to mean something.
GPU = Sizes(
    "gpu",
    throughput_epochs=5,
    ttq_epochs=(30, 150),
    ttq_sample_every=15,
    ttq_eval_samples=256,
    sample_steps=(10, 25, 50),
    discrete_steps=(4, 8, 16),
    batches=(1, 8, 64, 256, 1024),
    checkpoint_epochs=(1, 3),
    checkpoint_model="notebook",
    compile_batch=512,
    compile_iters=20,
    compile_backend="inductor",
    proxies="gpu_check: time to quality is a 30 + 150 epoch run of the default model, checkpoint runs 1 + 3 epochs",
)
PROFILES = {s.name: s for s in (FULL, QUICK, TINY, GPU)}
