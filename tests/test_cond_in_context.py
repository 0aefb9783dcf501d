"""ModelConfig.cond_in_context: condition attributes also enter the DiT as tokens the latent tokens attend to."""

from __future__ import annotations

import pytest
import torch
from model_helpers import randomize_zero_init

from hmolqd.config import Config, ConfigError, ModelConfig
from hmolqd.data.attributes import ABSENT, PRESENT
from hmolqd.models.denoiser import Denoiser
from hmolqd.models.latent_diffusion import LatentDiffusion

LATENT = (4, 4, 3)  # (C, h, w)


def _denoiser(in_context: bool) -> Denoiser:
    torch.manual_seed(0)
    d = randomize_zero_init(Denoiser(LATENT, dim=32, depth=2, cond_size=5, in_context=in_context)).eval()
    with torch.no_grad():
        d.cond_embed.weight.zero_()  # silence the adaLN path: only the in-context tokens can carry the condition
    return d


def test_default_is_off_and_keeps_the_state_dict() -> None:
    assert ModelConfig().cond_in_context is False
    plain = LatentDiffusion(ModelConfig(latent_dim=4, denoiser_dim=32, denoiser_depth=1), LATENT)
    assert not any(k.startswith("denoiser.cond_token") for k in plain.state_dict())
    ctx = LatentDiffusion(ModelConfig(latent_dim=4, denoiser_dim=32, denoiser_depth=1, cond_in_context=True), LATENT)
    extra = set(ctx.state_dict()) - set(plain.state_dict())
    assert extra == {"denoiser.cond_token.weight"}
    assert ctx.denoiser.cond_token.weight.shape == (5 * 3, 32)  # K attributes x 3 values


def test_fresh_in_context_denoiser_outputs_zero_with_the_latent_shape() -> None:
    d = Denoiser(LATENT, dim=32, depth=2, cond_size=5, in_context=True)
    x = torch.randn(3, *LATENT)
    out = d(x, torch.tensor([0, 5, 99]), torch.zeros(3, 5, dtype=torch.long))
    assert out.shape == x.shape and not bool(out.any())


@pytest.mark.parametrize("in_context", [True, False])
def test_condition_reaches_the_output_through_the_tokens(in_context: bool) -> None:
    """With the adaLN condition table zeroed, the condition changes the output only via the in-context tokens."""
    d = _denoiser(in_context)
    x = torch.randn(2, *LATENT, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([10, 10])
    a = torch.full((2, 5), ABSENT)
    b = torch.tensor([[PRESENT, ABSENT, ABSENT, ABSENT, ABSENT]] * 2)
    with torch.no_grad():
        diff = (d(x, t, a) - d(x, t, b)).abs().max().item()
    assert (diff > 1e-4) == in_context


def test_config_rule_and_flat_parsing() -> None:
    assert Config.from_flat({"cond_in_context": "true"}).model.cond_in_context is True
    with pytest.raises(ConfigError, match="cond_in_context"):
        ModelConfig(cond_in_context=1)  # type: ignore[arg-type]
