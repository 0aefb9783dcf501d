"""The training step's GPU hygiene (issue 29), checked on the CPU where it can be: AdamW's fused kernel only where
every parameter is on CUDA, and a resumed optimizer that keeps the kernel of its own device; no host read of the
GradScaler's scale, of the codebook's first-update flag, of the mask ratio's range or of the loss (where no bar
shows it) in a step, and no list index copied to the device. That CPU results
did not move is what the bit-exact tests of tests/test_train.py and tests/test_amp_cpu.py hold. The `gpu` tests run
the trainer's step under CUDA's sync debug mode, which raises on any host sync."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import pytest
import torch
from model_helpers import TINY_MODEL, fp16_toy
from torch import nn

from hmolqd.config import Config, stage_named
from hmolqd.data.attributes import UNKNOWN, condition_groups, drop_condition
from hmolqd.data.tiles import NUM_TILES
from hmolqd.diffusion import absorbing
from hmolqd.models.quantizer import VectorQuantizerEMA, code_histogram
from hmolqd.models.room_model import RoomModel
from hmolqd.models.vqvae import CENTER_COLUMNS
from hmolqd.training.optim import LRSchedule, Optimization, fused_adamw, make_optimizer
from hmolqd.training.progress import Progress
from hmolqd.training.runtime import setup_runtime
from hmolqd.training.stages import objective, set_train_mode, stage_data, start_diffusion_stage, trainable

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def cpu_fused_adamw() -> bool:
    """torch >= 2.4 has AdamW's fused kernel on the CPU too (the tests use it to stand for CUDA's)."""
    try:
        torch.optim.AdamW([nn.Parameter(torch.zeros(1))], fused=True)
    except (RuntimeError, TypeError):
        return False
    return True


def steps(model: nn.Module, opt: torch.optim.Optimizer, n: int, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        for group in opt.param_groups:
            group["lr"] = 1e-2
        model(torch.randn(8, 4, generator=g)).square().mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


def test_the_cpu_keeps_torchs_default_adamw() -> None:
    params = list(nn.Linear(4, 3).parameters())
    assert not fused_adamw(params)
    opt = make_optimizer(params, 0.1)
    # torch's defaults: no kernel chosen (the CPU optimizer is built exactly as before the fused kernel)
    assert all(g["fused"] is None and g["foreach"] is None for g in opt.param_groups)


@pytest.mark.skipif(not cpu_fused_adamw(), reason="this torch has no fused AdamW on the CPU")
@pytest.mark.parametrize(("saved_fused", "loading_fused"), [(True, False), (False, True)])
def test_a_resumed_optimizer_keeps_the_kernel_of_its_own_device(saved_fused: bool, loading_fused: bool) -> None:
    """A checkpoint's param groups name the kernel of the run that wrote it (a CUDA run's fused=True, a CPU run's
    default); the loading optimizer keeps its own and steps exactly as one of its kernel given the same numbers."""
    torch.manual_seed(0)
    writer = nn.Linear(4, 3)
    saved = make_optimizer(writer.parameters(), 0.1, fused=saved_fused)
    steps(writer, saved, 2)
    state = saved.state_dict()
    loaded_model, reference_model = copy.deepcopy(writer), copy.deepcopy(writer)
    loaded = make_optimizer(loaded_model.parameters(), 0.1, fused=loading_fused)
    loaded.load_state_dict(copy.deepcopy(state))  # a load shares the tensors it is given (they step in place)
    assert all(bool(g["fused"]) == loading_fused for g in loaded.param_groups)
    # the reference: the same numbers, with the flags of the loading kernel written in by hand
    own = {"fused": True} if loading_fused else {"fused": None, "foreach": None}
    by_hand = {**state, "param_groups": [{**g, **own} for g in state["param_groups"]]}
    reference = make_optimizer(reference_model.parameters(), 0.1, fused=loading_fused)
    reference.load_state_dict(copy.deepcopy(by_hand))
    steps(loaded_model, loaded, 2, seed=1)
    steps(reference_model, reference, 2, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(loaded_model.parameters(), reference_model.parameters()))


def test_the_fp16_step_reads_no_scale_to_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether the GradScaler skipped a step is a device tensor; `last_step_skipped` reads it when asked."""
    _, rt, o, loss = fp16_toy()

    def host_read(self: torch.amp.GradScaler) -> float:
        raise AssertionError("GradScaler.get_scale (a host read) called in the step")

    x = torch.randn(32, 8)
    monkeypatch.setattr(torch.amp.GradScaler, "get_scale", host_read)
    o.step(loss, x, torch.full((32, 1), 1e-2), 1e-3, rt.autocast)
    ok = o.skipped
    o.step(loss, x, torch.full((32, 1), 1e9), 1e-3, rt.autocast)  # gradients beyond fp16's range once scaled
    monkeypatch.undo()
    assert isinstance(o.skipped, torch.Tensor) and o.skipped.dim() == 0
    assert (int(ok), int(o.skipped), o.last_step_skipped) == (0, 1, True)


def test_without_a_scaler_nothing_is_skipped_and_nothing_is_a_tensor() -> None:
    model = nn.Linear(4, 1)
    o = Optimization.create(model.parameters(), Config().train, "cpu", use_scaler=False)
    o.step(lambda x, c: (model(x).mean(), {}), torch.randn(4, 4), torch.zeros(4, 1), 1e-3)
    assert o.skipped == 0 and not o.last_step_skipped


def test_skipped_steps_add_up_on_the_device_and_checkpoint_as_an_int() -> None:
    p = Progress()
    p.advance(4, torch.tensor(1.0), 0)
    p.advance(4, torch.tensor(1.0), torch.tensor(1))
    p.advance(4, torch.tensor(1.0), torch.tensor(1))
    assert isinstance(p.epoch_skipped, torch.Tensor) and p.skipped_steps() == 2
    state = p.state()
    assert state["epoch_skipped"] == 2 and type(state["epoch_skipped"]) is int
    p.finish_epoch({"epoch": 1})
    assert p.skipped_steps() == 0


def test_the_codebook_init_flag_is_read_until_seen_then_never(monkeypatch: pytest.MonkeyPatch) -> None:
    points = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]]).repeat(25, 1).view(100, 2, 1, 1)
    vq = VectorQuantizerEMA(4, 2, restart="farthest").train()
    fresh = copy.deepcopy(vq.state_dict())
    vq(points)  # the first update: farthest-point initialisation, the flag read once
    after_init = vq.embedding.clone()

    def host_read(self: torch.Tensor) -> bool:
        raise AssertionError("a tensor was read to the host (bool) in a later update")

    monkeypatch.setattr(torch.Tensor, "__bool__", host_read)
    vq(points)  # a later update reads no flag
    monkeypatch.undo()
    vq.load_state_dict(fresh)  # the loaded buffer says "not initialised": the next update initialises again
    vq.embedding.fill_(100.0)
    vq(points)
    assert sorted(map(tuple, vq.embedding.tolist())) == sorted(map(tuple, after_init.tolist()))


def test_the_mask_ratio_range_is_checked_on_the_cpu_only() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        absorbing.mask_ratio(torch.tensor([1.5]), "cosine")
    # off the CPU (here the meta device, which has no values) no check reads the tensor to the host
    out = absorbing.mask_ratio(torch.full((3,), 1.5, device="meta"), "cosine")
    assert out.device.type == "meta" and out.dtype == torch.float64


def test_the_sync_free_forms_equal_the_indexed_ones() -> None:
    """The step's list indices and bincount, rewritten without a host-to-GPU copy or host read, give the same
    values as before on any input (the column pad, the code histogram, the condition dropout); the column pad
    also the same memory layout, which the convolutions after it see (CPU results stay bit-identical)."""
    g = torch.Generator().manual_seed(0)
    rooms = torch.randint(0, NUM_TILES, (5, 16, 11), generator=g)
    vqvae = RoomModel.from_config(Config.from_flat({**TINY_MODEL, "column_pad": "center"})).vqvae
    x = torch.nn.functional.one_hot(rooms, NUM_TILES).permute(0, 3, 1, 2).float()
    padded, before = vqvae.one_hot(rooms), x[..., CENTER_COLUMNS]
    assert torch.equal(padded, before) and padded.stride() == before.stride()
    indices = torch.randint(0, 16, (7, 4, 3), generator=g)
    assert torch.equal(code_histogram(indices, 16), torch.bincount(indices.reshape(-1), minlength=16).float())
    groups = condition_groups(cond_stairs=True, cond_attributes=True)
    cond = torch.randint(0, 2, (64, sum(len(c) for c in groups)), generator=g)
    torch.manual_seed(1)
    dropped = drop_condition(cond, 0.3, groups)
    torch.manual_seed(1)  # the same coins, dropped with list indices as before
    drop = (torch.rand(64, 1) < 0.3).expand(64, cond.shape[1]).clone()
    drop_group = torch.rand(64, len(groups)) < 0.3
    for i, cols in enumerate(groups):
        drop[:, cols] |= drop_group[:, i : i + 1]
    assert torch.equal(dropped, torch.where(drop, UNKNOWN, cond)) and bool(drop.any())


@pytest.mark.real_data
@pytest.mark.parametrize("bar", [False, True])
def test_the_loss_is_read_only_where_a_bar_shows_it(
    bar: bool, vglc_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training into a log file (no bar) reads no loss to the host between epochs; a drawn bar reads it once per
    `log_every` steps."""
    from tqdm.auto import tqdm

    from hmolqd.training import loop

    postfixes: list[dict] = []

    class Bar(tqdm):
        def set_postfix(self, **values: object) -> None:
            postfixes.append(values)

    monkeypatch.setattr(loop, "tqdm", Bar)
    monkeypatch.setattr(loop, "bar_wanted", lambda stream=None: bar)
    flat = {**TINY_MODEL, "vqvae_epochs": 1, "num_epochs": 0, "batch_size": 128, "log_every": 2, "sample_every": 0}
    flat.update(mirror_augment=False, door_augment=0, recombine_augment=0, data_dir=str(vglc_dir), device="cpu")
    cfg = Config.from_flat({**flat, "checkpoint_dir": str(tmp_path / "c"), "output_dir": str(tmp_path / "o")})
    monkeypatch.setattr("sys.stderr", io.StringIO())  # the drawn bar's output
    steps = loop.train(cfg, log=lambda msg: None).history[-1]["step"]
    assert len(postfixes) == (steps // 2 if bar else 0) and steps > 2


# ---------------------------------------------------------------- on a GPU


@pytest.mark.gpu
@needs_cuda
def test_adamw_is_fused_on_cuda() -> None:
    params = list(nn.Linear(4, 3).cuda().parameters())
    assert fused_adamw(params)
    assert all(g["fused"] is True for g in make_optimizer(params, 0.1).param_groups)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("use_amp", [False, "bf16", "fp16"])
@pytest.mark.parametrize("stage", ["vqvae", "diffusion"])
def test_the_trainers_step_does_not_sync_with_the_host(use_amp: bool | str, stage: str) -> None:
    """Optimization.step, the EMA update and Progress.advance, as the loop runs them, after a few warm-up steps
    (the first VQ-VAE update reads the data to place the codebook), under sync debug mode "error"."""
    dev = torch.device("cuda", 0)
    if use_amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    cfg = Config.preset("gpu")
    torch.manual_seed(0)
    gen = RoomModel.from_config(cfg).to(dev)
    rt = setup_runtime(str(dev), use_amp=use_amp)
    row = stage_named(stage)
    rooms = torch.randint(0, 10, (256, 16, 11), device=dev)
    set_train_mode(gen, row)
    data = stage_data(gen, row, rooms, torch.zeros(256, 4, device=dev), torch.zeros(256, device=dev))
    if row.starts_denoiser:
        start_diffusion_stage(gen, data, rooms)
    o = Optimization.create(trainable(gen, row), cfg.train, dev.type, rt.use_scaler)
    loss_module, schedule, p = objective(gen, row, cfg), LRSchedule.from_config(cfg.train, 100), Progress()
    idx = torch.randint(len(data), (8, cfg.train.batch_size), device=dev)

    def step(i: int) -> None:
        loss = o.step(loss_module, data.x[idx[i]], data.cond[idx[i]], schedule(i), rt.autocast)
        if row.trains_denoiser:
            gen.update_ema(cfg.train.ema_decay)
        p.advance(cfg.train.batch_size, loss, o.skipped)

    for i in range(4):
        step(i)
    torch.cuda.synchronize(dev)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(4, 8):
            step(i)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(p.loss_sum).item()


@pytest.mark.gpu
@pytest.mark.real_data
@needs_cuda
def test_the_corpus_is_held_on_the_gpu(vglc_dir: Path) -> None:
    from hmolqd.training.startup import load_data

    cfg = Config.preset("gpu").with_overrides(data_dir=str(vglc_dir), device="cuda")
    data = load_data(cfg, setup_runtime("cuda", use_amp=False), lambda msg: None)
    assert all(t.is_cuda for s in (data.train, data.val) for t in (s.rooms, s.doors, s.stairs))
