"""Door guidance (hmolqd.sampling.door_guidance): the door loss, the x0 hook, and its plumbing through sampling."""

from __future__ import annotations

import pytest
import torch

from hmolqd.config import Config, ConfigError, ModelConfig
from hmolqd.data.tiles import DOOR, NUM_TILES, WALL
from hmolqd.diffusion import gaussian as diffusion
from hmolqd.models.room_model import RoomModel
from hmolqd.sampling.door_guidance import DOOR_REGIONS, door_guide, door_loss
from hmolqd.sampling.generate import generate


def _logits_of(rooms: torch.Tensor, confidence: float = 8.0) -> torch.Tensor:
    """Tile logits `(B, NUM_TILES, 16, 11)` that put `confidence` nats on each room's own tiles."""
    return torch.nn.functional.one_hot(rooms.long(), NUM_TILES).permute(0, 3, 1, 2).float() * confidence


def _walled_room(sides: tuple[bool, bool, bool, bool]) -> torch.Tensor:
    room = torch.full((16, 11), WALL, dtype=torch.long)
    for has, (rows, cols) in zip(sides, DOOR_REGIONS):
        if has:  # one door tile in the side's region
            sub = room[rows, cols].clone()
            sub[0, 0] = DOOR
            room[rows, cols] = sub
    return room


def test_door_loss_is_low_for_the_requested_doors_and_high_otherwise() -> None:
    wanted = torch.tensor([[True, False, True, False]])
    good = door_loss(_logits_of(_walled_room((True, False, True, False))[None]), wanted)
    wrong = door_loss(_logits_of(_walled_room((False, True, False, True))[None]), wanted)
    assert good.shape == (1,) and float(good) < 0.05 < 5.0 < float(wrong)


def test_guide_lowers_the_loss_and_zero_strength_is_identity() -> None:
    torch.manual_seed(0)
    decode = torch.nn.Conv2d(4, NUM_TILES, 3, padding=1)  # stands in for the VQ-VAE decoder on a (4, 16, 11) "latent"
    doors = torch.tensor([[True, False, False, True], [False, False, False, False]])
    x0 = torch.randn(2, 4, 16, 11)
    assert torch.equal(door_guide(decode, 1.0, doors, 0.0)(x0, 10), x0)
    before = door_loss(decode(x0), doors)
    after = door_loss(decode(door_guide(decode, 1.0, doors, 0.05, iters=3)(x0, 10)), doors)
    assert bool((after < before).all())
    with pytest.raises(ValueError, match="door_guidance"):
        door_guide(decode, 1.0, doors, -1.0)


def test_eps_from_x0_inverts_q_sample() -> None:
    _, a = diffusion.make_schedule("cosine", 100)
    x0, eps = torch.randn(3, 2, 4, 3), torch.randn(3, 2, 4, 3)
    x_t = diffusion.q_sample(x0, torch.full((3,), 40), eps, a)
    torch.testing.assert_close(diffusion.eps_from_x0(x_t, x0, 40, a), eps, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="clean end point"):
        diffusion.eps_from_x0(x_t, x0, -1, a)


def test_generate_with_door_guidance_is_deterministic_and_differs_from_plain() -> None:
    cfg = ModelConfig(
        num_embeddings=16,
        latent_dim=4,
        embedding_dim=16,
        downsample=4,
        denoiser_dim=32,
        denoiser_depth=1,
        num_timesteps=50,
    )
    torch.manual_seed(0)
    gen = RoomModel(cfg).eval()
    with torch.no_grad():
        for p in gen.ema.parameters():  # adaLN-Zero: give the fresh EMA denoiser a non-zero output
            p.add_(torch.randn_like(p) * 0.1)
    kw = dict(doors="top,left", steps=4, seed=3)
    a = generate(gen, 3, door_guidance=2.0, **kw)
    assert torch.equal(a, generate(gen, 3, door_guidance=2.0, **kw))
    assert a.shape == (3, 16, 11) and a.dtype == torch.uint8
    assert torch.equal(generate(gen, 3, door_guidance=0.0, **kw), generate(gen, 3, **kw))


def test_config_key() -> None:
    assert Config().run.sampling.door_guidance == 0.0
    assert Config.from_flat({"door_guidance": "3"}).run.sampling.door_guidance == 3.0
    with pytest.raises(ConfigError, match="door_guidance"):
        Config.from_flat({"door_guidance": -1})
