"""LatentDiffusion and the DiT denoiser: conditioning, guidance, latent scale, sampling, a tiny overfit."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from model_helpers import randomize_zero_init
from torch import nn

from hmolqd.config import ModelConfig, SamplingSettings
from hmolqd.data.attributes import ABSENT, PRESENT, UNKNOWN, condition_groups, condition_tokens, drop_condition
from hmolqd.models.denoiser import Denoiser
from hmolqd.models.latent_diffusion import LatentDiffusion

LATENT = (4, 4, 3)  # (C, h, w) of a downsample-4 grid with a tiny latent_dim


@pytest.fixture
def cfg() -> ModelConfig:
    return ModelConfig(model_kind="continuous", latent_dim=4, denoiser_dim=32, denoiser_depth=2, num_timesteps=100)


@pytest.fixture
def model(cfg: ModelConfig) -> LatentDiffusion:
    m = LatentDiffusion(cfg, LATENT)
    randomize_zero_init(m.denoiser)
    return m.eval()


def _doors(rows: list[str]) -> torch.Tensor:
    from hmolqd.data.tiles import SIDES

    return torch.tensor([[side in r.split(",") for side in SIDES] for r in rows])


def test_default_denoiser_size() -> None:
    """Regression pin of the continuous model's former default (DiT, width 256, depth 6, on the 4x3x64 grid)."""
    cfg = ModelConfig(model_kind="continuous", denoiser_dim=256, denoiser_depth=6)
    denoiser = Denoiser((cfg.latent_dim, 4, 3), cfg.denoiser_dim, cfg.denoiser_depth, 5)
    assert sum(p.numel() for p in denoiser.parameters()) == 7_404_096


def test_fresh_denoiser_outputs_zero_and_shapes(cfg: ModelConfig) -> None:
    m = LatentDiffusion(cfg, LATENT)
    x = torch.randn(3, *LATENT)
    out = m.denoiser(x, torch.tensor([0, 5, 99]), torch.zeros(3, 5, dtype=torch.long))
    assert out.shape == x.shape and not bool(out.any())  # adaLN-Zero: identity blocks, zero output layer
    with pytest.raises(ValueError, match=r"cond must be \(B, 5\)"):
        m.denoiser(x, torch.tensor([0, 5, 99]), torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="UNKNOWN=2"):
        m.denoiser(x, torch.tensor([0, 5, 99]), torch.full((3, 5), 3))
    with pytest.raises(ValueError, match="latents must be"):
        m.denoiser(torch.randn(3, 4, 8, 6), torch.tensor([0, 5, 99]), torch.zeros(3, 5, dtype=torch.long))


def test_condition_tokens() -> None:
    doors = _doors(["top,left", ""])
    tokens = condition_tokens(doors, torch.tensor([True, False]), n=2, cond_stairs=True)
    assert tokens.tolist() == [[PRESENT, ABSENT, PRESENT, ABSENT, PRESENT], [ABSENT] * 5]
    assert condition_tokens(doors, None, n=2, cond_stairs=True)[:, 4].tolist() == [UNKNOWN, UNKNOWN]
    assert condition_tokens(None, None, n=3, cond_stairs=False).tolist() == [[UNKNOWN] * 4] * 3
    with pytest.raises(ValueError, match="cond_stairs is False"):
        condition_tokens(doors, torch.tensor([True, False]), n=2, cond_stairs=False)
    with pytest.raises(ValueError, match=r"doors must be \(3, 4\)"):
        condition_tokens(doors, None, n=3, cond_stairs=True)


@pytest.mark.parametrize("cond_stairs", [True, False])
def test_room_condition(cfg: ModelConfig, cond_stairs: bool) -> None:
    from hmolqd.data.tiles import DOOR, FLOOR, STAIR

    m = LatentDiffusion(dataclasses.replace(cfg, cond_stairs=cond_stairs), LATENT)
    rooms = torch.full((2, 16, 11), FLOOR)
    rooms[0, 0, 5] = DOOR  # top band
    rooms[0, 7, 10] = DOOR  # right band
    rooms[1, 8, 5] = STAIR
    tokens = m.room_condition(rooms)
    expected = [[PRESENT, ABSENT, ABSENT, PRESENT, ABSENT], [ABSENT, ABSENT, ABSENT, ABSENT, PRESENT]]
    assert tokens.tolist() == [row[: 4 + int(cond_stairs)] for row in expected]


@pytest.mark.parametrize("cond_stairs", [True, False])
def test_drop_condition_rates(cond_stairs: bool) -> None:
    K = 4 + int(cond_stairs)
    cond = torch.randint(0, 2, (20000, K))
    assert torch.equal(drop_condition(cond, 0.0, condition_groups(cond_stairs, False)), cond)
    dropped = drop_condition(cond, 0.2, condition_groups(cond_stairs, False)) == UNKNOWN  # (B, K)
    doors_gone, stairs_gone = dropped[:, :4].all(1), dropped[:, -1]
    assert bool((dropped[:, :4].any(1) == doors_gone).all())  # door sides drop together
    if cond_stairs:
        # whole row: 0.2; doors (or stairs) group: 0.2 + 0.8 * 0.2 = 0.36; both: 0.2 + 0.8 * 0.04 = 0.232
        assert doors_gone.float().mean().item() == pytest.approx(0.36, abs=0.02)
        assert stairs_gone.float().mean().item() == pytest.approx(0.36, abs=0.02)
        assert (doors_gone & stairs_gone).float().mean().item() == pytest.approx(0.232, abs=0.02)
    else:
        assert doors_gone.float().mean().item() == pytest.approx(0.2, abs=0.02)
    with pytest.raises(ValueError, match="cond_drop_prob"):
        drop_condition(cond, 1.0, condition_groups(cond_stairs, False))


def test_latent_scale_buffer(cfg: ModelConfig) -> None:
    m = LatentDiffusion(cfg, LATENT)
    assert m.latent_scale.item() == 1.0
    z = 3.0 * torch.randn(64, *LATENT)
    scale = m.set_latent_scale(z)
    assert scale == pytest.approx(1 / z.std().item(), rel=1e-5)
    fresh = LatentDiffusion(cfg, LATENT)
    fresh.load_state_dict(m.state_dict())  # saved with the model
    assert fresh.latent_scale.item() == pytest.approx(scale)
    assert {"latent_scale", "alphas_cumprod", "betas"} <= set(m.state_dict())
    with pytest.raises(ValueError, match="non-constant"):
        m.set_latent_scale(torch.ones(4, *LATENT))


def test_loss_scales_latents_inside(model: LatentDiffusion) -> None:
    z = torch.randn(8, *LATENT)
    cond = torch.randint(0, 2, (8, 5))
    torch.manual_seed(3)
    loss1, _ = model.loss(z, cond, drop_prob=0.1)
    model.latent_scale.fill_(0.5)
    torch.manual_seed(3)
    loss2, logs = model.loss(2 * z, cond, drop_prob=0.1)
    torch.testing.assert_close(loss1, loss2)
    torch.manual_seed(3)
    torch.testing.assert_close(model(2 * z, cond.bool(), drop_prob=0.1)[0], loss1)  # forward == loss; bool cond ok
    assert loss2.requires_grad and loss2.dim() == 0
    assert set(logs) == {"diffusion_loss", "x0_mse"}
    assert all(v.dim() == 0 and not v.requires_grad for v in logs.values())
    with pytest.raises(ValueError, match="z0 must be"):
        model.loss(torch.randn(8, 4, 8, 6), cond, drop_prob=0.1)


@pytest.mark.parametrize("guidance", [0.0, 1.0, 3.5])
def test_guided_output_is_cfg_combination(model: LatentDiffusion, guidance: float) -> None:
    x, t = torch.randn(5, *LATENT), torch.tensor([1, 20, 40, 60, 99])
    cond = torch.randint(0, 2, (5, 5))
    with torch.no_grad():
        c = model.denoiser(x, t, cond)
        u = model.denoiser(x, t, torch.full_like(cond, UNKNOWN))
        got = model.guided_output(model.denoiser, x, t, cond, guidance)
    assert not torch.allclose(c, u)  # the condition reaches the output
    torch.testing.assert_close(got, u + guidance * (c - u), rtol=1e-5, atol=1e-5)
    if guidance == 1.0:
        torch.testing.assert_close(got, c, rtol=1e-5, atol=1e-5)


def _sample(model: LatentDiffusion, cond, seed: int = 0, **kw) -> torch.Tensor:
    kw = {"steps": 8, "eta": 0.0, "guidance": 2.0, **kw}
    with torch.no_grad():
        settings = SamplingSettings(
            sample_steps=kw.pop("steps"), ddim_eta=kw.pop("eta"), guidance_scale=kw.pop("guidance")
        )
        n = cond.shape[0] if cond is not None else 6
        return model.sample(n, cond, settings, generator=torch.Generator().manual_seed(seed), **kw)


def test_sample_dropped_condition_equals_unconditional(model: LatentDiffusion) -> None:
    unknown = torch.full((6, 5), UNKNOWN)
    torch.testing.assert_close(_sample(model, unknown, guidance=3.0), _sample(model, None, guidance=1.0))
    x, t = torch.randn(6, *LATENT), torch.full((6,), 50)
    with torch.no_grad():  # through the batched cond + uncond forward as well
        torch.testing.assert_close(
            model.guided_output(model.denoiser, x, t, unknown, 3.0), model.denoiser(x, t, unknown), rtol=1e-5, atol=1e-5
        )


def test_sample_doors_reach_the_denoiser(model: LatentDiffusion) -> None:
    top = model.condition_tokens(_doors(["top"] * 6), None, 6)
    left = model.condition_tokens(_doors(["left"] * 6), None, 6)
    a, b = _sample(model, top), _sample(model, left)
    assert a.shape == (6, *LATENT) and bool(torch.isfinite(a).all())
    assert (a - b).abs().max().item() > 1e-3

    seen: list[torch.Tensor] = []

    class Spy(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x, t, cond):
            seen.append(cond.clone())
            return self.inner(x, t, cond)

    _sample(model, top, denoiser=Spy(model.denoiser), steps=3)
    assert len(seen) == 3  # one batched forward per step: cond rows then the all-UNKNOWN rows
    assert torch.equal(seen[0], torch.cat([top, torch.full_like(top, UNKNOWN)]))


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_sample_determinism_and_batch_invariance(model: LatentDiffusion, eta: float) -> None:
    cond = model.condition_tokens(_doors(["top", "bottom", "", "left,right", "top", "right", "left"]), None, 7)
    ref = _sample(model, cond, seed=5, eta=eta)
    torch.manual_seed(999)  # the global RNG must not matter
    torch.testing.assert_close(_sample(model, cond, seed=5, eta=eta), ref, rtol=0, atol=0)
    torch.testing.assert_close(_sample(model, cond, seed=5, eta=eta, batch_size=3), ref, rtol=1e-5, atol=1e-5)
    assert (_sample(model, cond, seed=6, eta=eta) - ref).abs().max().item() > 1e-2


def test_sample_returns_unscaled_latents(model: LatentDiffusion) -> None:
    cond = torch.full((6, 5), UNKNOWN)
    base = _sample(model, cond)
    model.latent_scale.fill_(4.0)
    torch.testing.assert_close(_sample(model, cond) * 4.0, base)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_sample_runs_for_every_schedule_and_target(cfg: ModelConfig, schedule: str, prediction: str) -> None:
    m = LatentDiffusion(dataclasses.replace(cfg, schedule=schedule, prediction=prediction), LATENT)
    randomize_zero_init(m.denoiser, std=0.02)
    out = _sample(m, torch.randint(0, 3, (4, 5)), steps=100, eta=0.5)
    assert out.shape == (4, *LATENT) and bool(torch.isfinite(out).all())


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_tiny_overfit_loss_falls(cfg: ModelConfig, prediction: str) -> None:
    """The diffusion loss on 8 fixed random latents falls to under half its starting value in 400 Adam steps."""
    m = LatentDiffusion(dataclasses.replace(cfg, prediction=prediction), LATENT)
    z = torch.randn(8, *LATENT, generator=torch.Generator().manual_seed(0))
    cond = torch.randint(0, 2, (8, 5), generator=torch.Generator().manual_seed(1))
    m.set_latent_scale(z)

    def eval_loss() -> float:
        torch.manual_seed(123)  # same t / noise draws before and after training
        with torch.no_grad():
            return sum(m.loss(z.repeat(16, 1, 1, 1), cond.repeat(16, 1), drop_prob=0.0)[0].item() for _ in range(2)) / 2

    before = eval_loss()
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    for _ in range(400):
        loss, _ = m.loss(z.repeat(4, 1, 1, 1), cond.repeat(4, 1), drop_prob=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = eval_loss()
    assert after < 0.5 * before, (before, after)
