"""hmolqd.diffusion: schedules, noising, eps/v conversions and DDIM steps.

Checked three ways: the papers' equations written out here (DDPM posterior, Ho et al. 2020 eqs. 6-7),
pinned regression numbers, and, where the test-only package `diffusers` is installed, its DDPMScheduler /
DDIMScheduler as an independent implementation.
"""

from __future__ import annotations

import math

import pytest
import torch

from hmolqd.diffusion import gaussian as D

KINDS = ("linear", "cosine")
DIFFUSERS_KIND = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


def _diffusers():
    return pytest.importorskip("diffusers", reason="test-only reference: pip install diffusers")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", [1, 10, 1000])
def test_schedule_shapes_and_monotonicity(kind: str, T: int) -> None:
    betas, ac = D.make_schedule(kind, T)
    assert betas.shape == ac.shape == (T,)
    assert betas.dtype == ac.dtype == torch.float64
    assert bool(((betas > 0) & (betas < 1)).all())
    assert bool(((ac > 0) & (ac < 1)).all())
    assert bool((ac[1:] < ac[:-1]).all())  # more noise at every step
    torch.testing.assert_close(ac, torch.cumprod(1 - betas, 0))


# alphas_cumprod at t = 0, 249, 499, 749, 999 for T = 1000 (agree with diffusers to ~1e-6 relative).
PINNED = {
    "linear": [0.9999, 0.5240853738, 0.07858724288, 0.003350550439, 4.035829765e-05],
    "cosine": [0.9999587158, 0.8470121613, 0.4938435904, 0.1442721024, 2.428766907e-09],
}


@pytest.mark.parametrize("kind", KINDS)
def test_schedule_pinned_values(kind: str) -> None:
    _, ac = D.make_schedule(kind, 1000)
    got = ac[[0, 249, 499, 749, 999]]
    torch.testing.assert_close(got, torch.tensor(PINNED[kind], dtype=torch.float64), rtol=1e-8, atol=0)


def test_schedule_closed_forms() -> None:
    betas, ac = D.make_schedule("linear", 1000)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    assert ac[-1].item() == pytest.approx(
        math.prod(1 - (1e-4 + i * (0.02 - 1e-4) / 999) for i in range(1000)), rel=1e-9
    )
    # Cosine (Nichol & Dhariwal eq. 17): alpha_bar_t = f(t+1)/f(0) wherever the 0.999 beta clip is inactive.
    betas, ac = D.make_schedule("cosine", 1000)
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 10, 500, 990):
        assert ac[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9)
    assert betas[-1].item() == 0.999 and int((betas == 0.999).sum()) == 1


def test_schedule_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="kind 'quadratic'"):
        D.make_schedule("quadratic", 10)
    with pytest.raises(ValueError, match="num_timesteps"):
        D.make_schedule("linear", 0)


@pytest.mark.parametrize("kind", KINDS)
def test_schedule_matches_diffusers(kind: str) -> None:
    diffusers = _diffusers()
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=DIFFUSERS_KIND[kind])
    betas, ac = D.make_schedule(kind, 1000)
    torch.testing.assert_close(betas.float(), ref.betas, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(ac.float(), ref.alphas_cumprod, rtol=2e-5, atol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_q_sample_and_velocity_match_diffusers(kind: str) -> None:
    diffusers = _diffusers()
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=DIFFUSERS_KIND[kind])
    _, ac = D.make_schedule(kind, 1000)
    x0, noise = torch.randn(5, 3, 4, 3), torch.randn(5, 3, 4, 3)
    t = torch.tensor([0, 1, 500, 998, 999])
    torch.testing.assert_close(D.q_sample(x0, t, noise, ac), ref.add_noise(x0, noise, t), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(D.v_target(x0, noise, t, ac), ref.get_velocity(x0, noise, t), rtol=1e-4, atol=1e-5)


def test_q_sample_extremes_and_range_check() -> None:
    _, ac = D.make_schedule("cosine", 1000)
    x0, noise = torch.randn(2, 4), torch.randn(2, 4)
    x = D.q_sample(x0, torch.tensor([0, 999]), noise, ac)
    torch.testing.assert_close(x[0], x0[0], atol=1e-2, rtol=0)  # almost clean at t=0
    torch.testing.assert_close(x[1], noise[1], atol=1e-4, rtol=0)  # pure noise at t=T-1
    with pytest.raises(ValueError, match="out of range"):
        D.q_sample(x0, torch.tensor([0, 1000]), noise, ac)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_prediction_round_trip(kind: str, prediction: str) -> None:
    """x0, eps -> x_t and target -> predict_x0_and_eps gives back x0 and eps, per sample and for an int t."""
    _, ac = D.make_schedule(kind, 1000)
    x0, noise = torch.randn(6, 2, 4, 3, dtype=torch.float64), torch.randn(6, 2, 4, 3, dtype=torch.float64)
    t = torch.tensor([0, 3, 100, 500, 900, 999])
    x_t = D.q_sample(x0, t, noise, ac)
    target = D.training_target(x0, noise, t, prediction, ac)
    x0_hat, eps_hat = D.predict_x0_and_eps(target, x_t, t, prediction, ac)
    # At t=999 (cosine: alpha_bar ~ 2e-9) the eps route divides by sqrt(alpha_bar): loose there.
    torch.testing.assert_close(x0_hat[:5], x0[:5], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(eps_hat, noise, rtol=1e-9, atol=1e-9)
    x_t1 = D.q_sample(x0, torch.full((6,), 250), noise, ac)
    out = D.training_target(x0, noise, torch.full((6,), 250), prediction, ac)
    torch.testing.assert_close(D.predict_x0_and_eps(out, x_t1, 250, prediction, ac)[0], x0)
    with pytest.raises(ValueError, match="clean end point"):
        D.predict_x0_and_eps(out, x_t1, -1, prediction, ac)
    with pytest.raises(ValueError, match="prediction 'x0'"):
        D.training_target(x0, noise, t, "x0", ac)


def test_v_equals_eps_and_x0_rotation() -> None:
    """Salimans & Ho: with a = cos^2(phi), v = cos(phi) eps - sin(phi) x0 and x_t = cos(phi) x0 + sin(phi) eps."""
    _, ac = D.make_schedule("linear", 100)
    x0, eps = torch.randn(1, 8, dtype=torch.float64), torch.randn(1, 8, dtype=torch.float64)
    t = torch.tensor([40])
    phi = math.acos(math.sqrt(ac[40].item()))
    torch.testing.assert_close(D.v_target(x0, eps, t, ac), math.cos(phi) * eps - math.sin(phi) * x0)
    torch.testing.assert_close(D.q_sample(x0, t, eps, ac), math.cos(phi) * x0 + math.sin(phi) * eps)


def test_ddim_timesteps() -> None:
    ts = D.ddim_timesteps(1000, 50)
    assert ts.dtype == torch.long and ts.shape == (50,)
    assert ts[:3].tolist() == [999, 979, 959] and ts[-1].item() == 19
    assert D.ddim_timesteps(10, 10).tolist() == list(range(9, -1, -1))
    assert D.ddim_timesteps(1000, 1).tolist() == [999]
    for T, steps in [(1000, 7), (1000, 333), (100, 99), (37, 5)]:
        ts = D.ddim_timesteps(T, steps)
        assert ts[0].item() == T - 1 and ts.shape == (steps,)
        assert bool((ts[1:] < ts[:-1]).all()) and ts[-1].item() >= 0
    for bad in (0, 1001):
        with pytest.raises(ValueError, match="steps must be"):
            D.ddim_timesteps(1000, bad)


@pytest.mark.parametrize("T,steps", [(1000, 50), (1000, 7), (1000, 333), (100, 100)])
def test_ddim_timesteps_match_diffusers_trailing(T: int, steps: int) -> None:
    diffusers = _diffusers()
    ref = diffusers.DDIMScheduler(num_train_timesteps=T, timestep_spacing="trailing")
    ref.set_timesteps(steps)
    assert D.ddim_timesteps(T, steps).tolist() == ref.timesteps.tolist()


def _ddpm_posterior(x_t, x0, t, betas, ac):
    """Ho et al. 2020 eqs. 6-7: mean and variance of q(x_{t-1} | x_t, x0)."""
    a_t, a_prev, beta = ac[t].item(), (ac[t - 1].item() if t > 0 else 1.0), betas[t].item()
    mean = math.sqrt(a_prev) * beta / (1 - a_t) * x0 + math.sqrt(1 - beta) * (1 - a_prev) / (1 - a_t) * x_t
    return mean, (1 - a_prev) / (1 - a_t) * beta


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("t", [0, 1, 17, 500, 999])
def test_ddim_eta1_full_steps_is_ddpm_posterior(kind: str, t: int) -> None:
    betas, ac = D.make_schedule(kind, 1000)
    x0, x_t, z = (torch.randn(3, 2, 4, 3, dtype=torch.float64) for _ in range(3))
    eps = (x_t - math.sqrt(ac[t].item()) * x0) / math.sqrt(1 - ac[t].item())  # the eps consistent with (x_t, x0)
    mean, var = _ddpm_posterior(x_t, x0, t, betas, ac)
    got = D.ddim_step(x_t, t, t - 1, x0, eps, ac, eta=1.0, noise=z)
    torch.testing.assert_close(got, mean + math.sqrt(var) * z, rtol=1e-7, atol=1e-7)


def test_ddim_oracle_lands_on_x0() -> None:
    """Deterministic DDIM (eta=0) with the exact eps of a fixed x0 reaches x0 from any x_T, in any step count."""
    _, ac = D.make_schedule("cosine", 1000)
    x0 = torch.randn(4, 3, 2, dtype=torch.float64)
    for steps in (1, 5, 50):
        x = torch.randn_like(x0)
        ts = D.ddim_timesteps(1000, steps).tolist()
        for i, t in enumerate(ts):
            eps = (x - math.sqrt(ac[t].item()) * x0) / math.sqrt(1 - ac[t].item())
            x = D.ddim_step(x, t, ts[i + 1] if i + 1 < steps else -1, x0, eps, ac, eta=0.0, noise=None)
        torch.testing.assert_close(x, x0)


def test_ddim_step_argument_checks() -> None:
    _, ac = D.make_schedule("linear", 100)
    x = torch.zeros(1, 3)
    with pytest.raises(ValueError, match="needs a noise tensor"):
        D.ddim_step(x, 50, 40, x, x, ac, eta=0.5, noise=None)
    with pytest.raises(ValueError, match="must be below t"):
        D.ddim_step(x, 40, 40, x, x, ac, eta=0.0, noise=None)
    with pytest.raises(ValueError, match="eta must be >= 0"):
        D.ddim_step(x, 50, 40, x, x, ac, eta=-1.0, noise=None)
    # The last step (to t_prev = -1) has sigma = 0 for any eta, so no noise is needed there.
    D.ddim_step(x, 5, -1, x, x, ac, eta=1.0, noise=None)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("eta", [0.0, 0.7])
def test_ddim_sampling_matches_diffusers(kind: str, prediction: str, eta: float) -> None:
    """A 50-step DDIM trajectory driven by a fixed fake denoiser equals diffusers' DDIMScheduler."""
    diffusers = _diffusers()
    prediction_type = {"eps": "epsilon", "v": "v_prediction"}[prediction]
    ref = diffusers.DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule=DIFFUSERS_KIND[kind],
        prediction_type=prediction_type,
        timestep_spacing="trailing",
        set_alpha_to_one=True,
        clip_sample=False,
    )
    ref.set_timesteps(50)
    _, ac = D.make_schedule(kind, 1000)
    fake = lambda x, t: torch.tanh(x) * (0.5 + t / 2000)  # noqa: E731  deterministic stand-in for a denoiser
    x_ref = x_ours = torch.randn(2, 3, 4, 3)
    ts = D.ddim_timesteps(1000, 50).tolist()
    for i, t in enumerate(ts):
        noise = torch.randn_like(x_ours)
        x_ref = ref.step(fake(x_ref, t), t, x_ref, eta=eta, variance_noise=noise).prev_sample
        x0, eps = D.predict_x0_and_eps(fake(x_ours, t), x_ours, t, prediction, ac)
        x_ours = D.ddim_step(x_ours, t, ts[i + 1] if i + 1 < len(ts) else -1, x0, eps, ac, eta, noise)
        torch.testing.assert_close(x_ours, x_ref, rtol=1e-3, atol=1e-4, msg=f"step {i} (t={t})")


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_ddpm_step_matches_diffusers(prediction: str) -> None:
    """DDIM with eta=1 and t_prev = t-1 vs diffusers' DDPMScheduler.step ("fixed_small" = posterior variance)."""
    diffusers = _diffusers()
    prediction_type = {"eps": "epsilon", "v": "v_prediction"}[prediction]
    ref = diffusers.DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="linear", prediction_type=prediction_type, clip_sample=False
    )
    _, ac = D.make_schedule("linear", 1000)
    x_t, model_out = torch.randn(2, 3, 4, 3), torch.randn(2, 3, 4, 3)
    for t in (999, 500, 1):
        # diffusers draws its variance noise with torch.randn from the generator; replay the same draw.
        got_ref = ref.step(model_out, t, x_t, generator=torch.Generator().manual_seed(t)).prev_sample
        noise = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(t))
        x0, eps = D.predict_x0_and_eps(model_out, x_t, t, prediction, ac)
        torch.testing.assert_close(D.ddim_step(x_t, t, t - 1, x0, eps, ac, 1.0, noise), got_ref, rtol=1e-4, atol=1e-4)
