"""RoomModel (VQ-VAE + latent diffusion + EMA) and hmolqd.sampling.generate.generate."""

from __future__ import annotations

import pytest
import torch
from model_helpers import TINY_MODEL, randomize_zero_init
from torch import nn

from hmolqd.config import ModelConfig
from hmolqd.data.attributes import ABSENT, PRESENT, UNKNOWN
from hmolqd.data.tiles import NUM_TILES, SIDES
from hmolqd.models.room_model import RoomModel, ema_update
from hmolqd.sampling.generate import generate, parse_doors, parse_stairs

TINY = {**TINY_MODEL, "model_kind": "continuous"}


@pytest.fixture
def model() -> RoomModel:
    g = RoomModel(ModelConfig(**TINY))
    randomize_zero_init(g.diffusion.denoiser)
    g.reset_ema()
    return g


class Spy(nn.Module):
    """Wraps a denoiser and records the condition tokens of every forward."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.conds: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        self.conds.append(cond.clone())
        return self.inner(x, t, cond)


@pytest.mark.parametrize("downsample,grid", [(4, (4, 3)), (2, (8, 6)), (1, (16, 12))])
def test_generator_builds_from_model_config(downsample: int, grid: tuple[int, int]) -> None:
    g = RoomModel(ModelConfig(**{**TINY, "downsample": downsample}))
    assert g.vqvae.latent_shape == g.diffusion.latent_shape == (4, *grid)
    assert g.ema is not g.diffusion.denoiser
    assert not any(p.requires_grad for p in g.ema.parameters())
    ema_state, live_state = g.ema.state_dict(), g.diffusion.denoiser.state_dict()
    assert all(torch.equal(ema_state[k], live_state[k]) for k in live_state)
    g.train()
    assert g.diffusion.training and not g.ema.training


def test_ema_update() -> None:
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    a_w, b_w = a.weight.detach().clone(), b.weight.detach().clone()
    ema_update(a, b, 1.0)
    assert torch.equal(a.weight, a_w)
    ema_update(a, b, 0.9)
    torch.testing.assert_close(a.weight.detach(), 0.9 * a_w + 0.1 * b_w)
    assert a.weight.grad is None
    ema_update(a, b, 0.0)
    assert torch.equal(a.weight, b.weight)
    with pytest.raises(ValueError, match="names differ"):
        ema_update(a, nn.Sequential(nn.Linear(3, 2)), 0.5)
    with pytest.raises(ValueError, match="shape"):
        ema_update(a, nn.Linear(4, 2), 0.5)
    with pytest.raises(ValueError, match="ema_decay"):
        ema_update(a, b, 1.5)


def test_generator_state_dict_round_trip(model: RoomModel) -> None:
    model.diffusion.set_latent_scale(torch.randn(32, *model.vqvae.latent_shape) * 2)
    fresh = RoomModel(ModelConfig(**TINY))
    fresh.load_state_dict(model.state_dict())
    assert fresh.diffusion.latent_scale.item() == pytest.approx(model.diffusion.latent_scale.item())
    assert torch.equal(generate(fresh, 4, doors="top", steps=4), generate(model, 4, doors="top", steps=4))


def test_generate_shape_dtype_and_mode(model: RoomModel) -> None:
    model.train()
    rooms = generate(model, 5, doors="top,left", steps=4)
    assert rooms.shape == (5, 16, 11) and rooms.dtype == torch.uint8 and rooms.device.type == "cpu"
    assert int(rooms.max()) < NUM_TILES
    assert model.training  # restored after the call
    assert generate(model, 0, steps=4).shape == (0, 16, 11)


def test_generate_deterministic_for_a_seed(model: RoomModel) -> None:
    a = generate(model, 6, doors="top", steps=4, seed=3)
    torch.manual_seed(12345)  # the global RNG must not matter
    torch.randn(100)
    assert torch.equal(generate(model, 6, doors="top", steps=4, seed=3), a)
    assert not torch.equal(generate(model, 6, doors="top", steps=4, seed=4), a)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_generate_independent_of_batch_size(model: RoomModel, eta: float) -> None:
    one = generate(model, 10, doors="bottom", steps=4, eta=eta, batch_size=10)
    assert torch.equal(generate(model, 10, doors="bottom", steps=4, eta=eta, batch_size=4), one)


def test_generate_door_condition_reaches_denoiser(model: RoomModel) -> None:
    spy = Spy(model.ema)
    model.ema = spy
    generate(model, 3, doors="top,right", stairs=True, steps=2, guidance=2.0)
    expected = torch.tensor([[PRESENT, ABSENT, ABSENT, PRESENT, PRESENT]] * 3)
    assert len(spy.conds) == 2
    assert torch.equal(spy.conds[0], torch.cat([expected, torch.full_like(expected, UNKNOWN)]))
    spy.conds.clear()
    generate(model, 3, steps=2)  # unconditional: one plain forward on all-UNKNOWN tokens
    assert torch.equal(spy.conds[0], torch.full((3, 5), UNKNOWN))
    # changing the doors changes the rooms
    a = generate(model, 8, doors="top", steps=4)
    b = generate(model, 8, doors="left,right,bottom", steps=4)
    assert not torch.equal(a, b)


def test_generate_use_ema_switch(model: RoomModel) -> None:
    live, ema = Spy(model.diffusion.denoiser), Spy(model.ema)
    model.diffusion.denoiser, model.ema = live, ema
    generate(model, 2, steps=2, use_ema=False)
    assert len(live.conds) == 2 and not ema.conds
    generate(model, 2, steps=2)
    assert len(ema.conds) == 2


def test_parse_doors_and_stairs() -> None:
    both = parse_doors("top, left", 3)
    assert both.shape == (3, 4) and both[0].tolist() == [side in ("top", "left") for side in SIDES]
    assert torch.equal(parse_doors(torch.tensor([True, False, True, False]), 3), both)
    assert parse_doors("", 2).tolist() == [[False] * 4] * 2
    assert parse_doors(None, 2) is None
    with pytest.raises(ValueError, match="unknown door side"):
        parse_doors("up", 2)
    with pytest.raises(ValueError, match="shape"):
        parse_doors(torch.ones(2, 3, dtype=torch.bool), 2)
    with pytest.raises(TypeError, match="bool"):
        parse_doors(torch.ones(4), 2)
    assert parse_stairs("yes", 2).tolist() == [True, True]
    assert parse_stairs(False, 2).tolist() == [False, False]
    assert parse_stairs(torch.tensor([True, False]), 2).tolist() == [True, False]
    assert parse_stairs(None, 2) is None
    with pytest.raises(ValueError, match="not one of"):
        parse_stairs("maybe", 2)


@pytest.mark.parametrize(
    ("screen", "text"),
    [
        ("north", "left"),
        ("south", "right"),
        ("west", "top"),
        ("east", "bottom"),
        ("North, EAST", "left,bottom"),
        ("north,west,south,east", "top,bottom,left,right"),
    ],
)
def test_parse_doors_takes_on_screen_names(screen: str, text: str) -> None:
    # On screen = the text grid transposed (hmolqd.render.TEXT_TO_SCREEN_SIDE): text left is the north side.
    assert torch.equal(parse_doors(screen, 2), parse_doors(text, 2))
    assert parse_doors("north,left", 1).tolist() == [[False, False, True, False]]  # two names of one side


def test_generate_rejects_stairs_without_stairs_input() -> None:
    g = RoomModel(ModelConfig(**{**TINY, "cond_stairs": False}))
    assert generate(g, 2, doors="top", steps=2).shape == (2, 16, 11)
    with pytest.raises(ValueError, match="cond_stairs is False"):
        generate(g, 2, doors="top", stairs=True, steps=2)
