"""VQ-VAE tokenizer: shapes/padding, straight-through gradient, EMA codebook math, dead-code restart,
state_dict round trip, determinism, DDP codebook sync, and a short real-corpus training run."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from model_helpers import TINY_MODEL

from hmolqd.config import Config, ModelConfig
from hmolqd.data import load_corpus, split_corpus
from hmolqd.data.tiles import DOOR, NUM_TILES, ROOM_H, ROOM_W, STAIR, WALL
from hmolqd.models.quantizer import LAPLACE_EPS, VectorQuantizerEMA, codebook_usage
from hmolqd.models.vqvae import VQVAE, tile_class_weights, vqvae_loss
from hmolqd.training.loop import train

REPO = Path(__file__).resolve().parents[1]
# The VQ-VAE part of the tests' tiny model (a VQVAE alone takes no denoiser keys, and its downsample is each test's),
# with the codebook restart and column padding these tests pin.
TINY = {
    **{k: TINY_MODEL[k] for k in ("num_embeddings", "latent_dim", "embedding_dim")},
    "codebook_restart": "uniform",
    "column_pad": "zero",
}


def tiny_model(downsample: int = 2, decay: float = 0.99, **keys: object) -> VQVAE:
    return VQVAE(ModelConfig(downsample=downsample, **{**TINY, **keys}), codebook_decay=decay)


@pytest.fixture
def rooms() -> torch.Tensor:
    """6 random rooms (B, 16, 11) uint8 with a wall border, one door and one stair each."""
    r = torch.randint(0, NUM_TILES, (6, ROOM_H, ROOM_W), generator=torch.Generator().manual_seed(1)).to(torch.uint8)
    r[:, 0, :] = WALL
    r[:, 0, 5] = DOOR
    r[:, 8, 5] = STAIR
    return r


def train_steps(model: VQVAE, rooms: torch.Tensor, steps: int) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(steps):
        loss, _ = model.loss(rooms, rare_tile_weight=4.0, commitment_beta=0.25)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


# ---- shapes, padding, crop ----
@pytest.mark.parametrize("downsample, grid", [(1, (16, 12)), (2, (8, 6)), (4, (4, 3))])
def test_shapes_for_each_downsample(downsample: int, grid: tuple[int, int], rooms: torch.Tensor) -> None:
    model = tiny_model(downsample)
    assert model.latent_shape == (TINY["latent_dim"], *grid)
    z = model.encode(rooms)
    assert z.shape == (6, *model.latent_shape)
    q = model.quantize(z)
    assert q.z_q.shape == z.shape and q.indices.shape == (6, *grid) and q.indices.dtype == torch.long
    assert q.commit_loss.shape == () and q.perplexity.shape == ()
    assert model.decode(q.z_q).shape == (6, NUM_TILES, ROOM_H, ROOM_W)  # padding column cropped
    out = model(rooms.long())  # long input is accepted as well as uint8
    assert out.logits.shape == (6, NUM_TILES, ROOM_H, ROOM_W) and out.indices.shape == (6, *grid)
    decoded = model.decode_latents(torch.randn(3, *model.latent_shape))
    assert decoded.shape == (3, ROOM_H, ROOM_W) and decoded.dtype == torch.long
    assert int(decoded.min()) >= 0 and int(decoded.max()) < NUM_TILES


def test_one_hot_pads_one_empty_column(rooms: torch.Tensor) -> None:
    x = tiny_model().one_hot(rooms)  # (B, 10, 16, 12)
    assert x.shape == (6, NUM_TILES, ROOM_H, 12)
    assert torch.equal(x[..., :ROOM_W].argmax(1), rooms.long())
    assert torch.equal(x[..., :ROOM_W].sum(1), torch.ones(6, ROOM_H, ROOM_W))
    assert torch.count_nonzero(x[..., ROOM_W:]) == 0  # the padding column is "outside the room"


@pytest.mark.parametrize("pad", ["center", "zero"])
def test_center_pad_makes_a_mirrored_room_a_mirrored_grid(rooms: torch.Tensor, pad: str) -> None:
    model = tiny_model(column_pad=pad)
    x = model.one_hot(rooms)  # (B, 10, 16, 12)
    mirrored_is_flipped = torch.equal(model.one_hot(rooms.flip(2)), x.flip(3))
    assert mirrored_is_flipped is (pad == "center")  # 11 columns: only the duplicated centre column makes it exact
    if pad == "center":
        assert torch.equal(x[..., 6], x[..., 5]) and torch.equal(x.argmax(1)[..., 6:], rooms.long()[..., 5:])
        assert model.decode(model.quantize(model.encode(rooms)).z_q).shape == (6, NUM_TILES, ROOM_H, ROOM_W)


def test_local_encoder_codes_see_only_their_own_patch(rooms: torch.Tensor) -> None:
    model = tiny_model(vq_local=True, column_pad="zero").eval()
    changed = rooms.clone()
    changed[:, 4, 7] = (changed[:, 4, 7] + 1) % NUM_TILES  # a tile of the patch of code cell (2, 3)
    diff = (model.encode(rooms) - model.encode(changed)).abs().amax(1) > 0  # (B, 8, 6)
    assert bool(diff[:, 2, 3].all()) and int(diff.sum()) == rooms.shape[0]


def test_farthest_point_initialisation_gives_distinct_inputs_distinct_codes() -> None:
    vq = VectorQuantizerEMA(4, 2, restart="farthest").train()
    # 4 distinct rows, 100 vectors
    points = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]]).repeat(25, 1)
    q = vq(points.view(100, 2, 1, 1))
    assert sorted(q.indices.flatten().unique().tolist()) == [0, 1, 2, 3]  # each distinct input got a code of its own
    with pytest.raises(ValueError, match="codebook_restart"):
        VectorQuantizerEMA(4, 2, restart="nearest")


@pytest.mark.parametrize(
    "bad, error, words",
    [
        (torch.zeros(2, 11, 16, dtype=torch.long), ValueError, "(B, 16, 11)"),
        (torch.zeros(2, 16, 11), TypeError, "integer tile indices"),
        (torch.full((2, 16, 11), NUM_TILES, dtype=torch.long), ValueError, "[0, 10)"),
    ],
)
def test_bad_rooms_are_rejected_with_the_rule(bad: torch.Tensor, error: type, words: str) -> None:
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        tiny_model()(bad)


def test_wrong_latent_shape_is_rejected() -> None:
    model = tiny_model(2)
    with pytest.raises(ValueError, match="latents must have shape"):
        model.decode(torch.zeros(1, TINY["latent_dim"], 4, 3))


# ---- quantizer ----
def test_straight_through_gradient_reaches_the_encoder_unchanged(rooms: torch.Tensor) -> None:
    model = tiny_model(2)
    z_e = model.encode(rooms)
    z_e.retain_grad()
    q = model.quantize(z_e)
    q.z_q.retain_grad()
    model.decode(q.z_q).square().sum().backward()  # reconstruction path only (no commitment term)
    assert q.z_q.grad is not None and q.z_q.grad.abs().sum() > 0
    torch.testing.assert_close(z_e.grad, q.z_q.grad, rtol=0, atol=0)
    assert next(model.encoder.parameters()).grad is not None


def test_commitment_loss_is_mse_to_the_chosen_code() -> None:
    vq = VectorQuantizerEMA(3, 2).eval()
    vq.embedding.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    z = torch.tensor([[0.9, 0.2], [0.1, 0.7]]).T.reshape(1, 2, 1, 2).clone()  # vectors (0.9, 0.1), (0.2, 0.7)
    q = vq(z)
    assert q.indices.tolist() == [[[1, 2]]]
    expected = ((0.1**2 + 0.1**2) + (0.2**2 + 0.3**2)) / 4
    assert float(q.commit_loss) == pytest.approx(expected, rel=1e-6)
    assert float(q.perplexity) == pytest.approx(2.0)


def test_ema_codebook_update_matches_the_formula() -> None:
    """One training step on a 3-code, 2-d codebook against the formula of van den Oord et al. 2017, A.1."""
    decay = 0.9
    vq = VectorQuantizerEMA(3, 2, decay=decay).train()
    vq.initialized.fill_(True)
    e0 = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    vq.embedding.copy_(e0)
    vq.ema_embed_sum.copy_(e0 * torch.tensor([[2.0], [1.0], [1.0]]))
    vq.ema_cluster_size.copy_(torch.tensor([2.0, 1.0, 1.0]))
    vectors = [(0.2, 0.0), (0.0, 0.4), (1.2, 0.8), (1.0, 1.4)]  # two per code 0 and 1, none for code 2
    z = torch.tensor(vectors).T.reshape(1, 2, 2, 2).clone()
    q = vq(z)
    assert q.indices.flatten().tolist() == [0, 0, 1, 1]
    n = [2.0, 2.0, 0.0]
    s = [(0.2, 0.4), (2.2, 2.2), (0.0, 0.0)]
    size = [decay * old + (1 - decay) * ni for old, ni in zip([2.0, 1.0, 1.0], n)]  # N_i
    m = [
        [decay * old * w + (1 - decay) * si for old, si in zip(e, s_i)]
        for e, w, s_i in zip(e0.tolist(), [2.0, 1.0, 1.0], s)
    ]
    total = sum(size)
    smoothed = [(x + LAPLACE_EPS) / (total + 3 * LAPLACE_EPS) * total for x in size]
    expected = torch.tensor([[mi / ni for mi in m_i] for m_i, ni in zip(m, smoothed)])
    torch.testing.assert_close(vq.ema_cluster_size, torch.tensor(size))
    torch.testing.assert_close(vq.ema_embed_sum, torch.tensor(m))
    torch.testing.assert_close(vq.embedding, expected)
    assert vq.embedding[0].tolist() == pytest.approx([0.01, 0.02], abs=1e-6)  # (0.1 * (0.2, 0.4)) / 2.0
    assert vq.unused_steps.tolist() == [0, 0, 1]


def test_eval_mode_leaves_the_codebook_alone(rooms: torch.Tensor) -> None:
    model = tiny_model(2)
    train_steps(model, rooms, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    model(rooms)
    model.decode_latents(torch.randn(2, *model.latent_shape))
    metrics = model.evaluate(rooms, batch_size=4)
    assert not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert set(metrics) == {"tile_accuracy", "room_accuracy", "codebook_usage", "perplexity"}
    out = model(rooms)
    same = out.logits.argmax(1) == rooms.long()  # (6, 16, 11)
    used, perplexity = codebook_usage(torch.bincount(out.indices.flatten(), minlength=TINY["num_embeddings"]).float())
    assert metrics["tile_accuracy"] == pytest.approx(float(same.float().mean()))
    assert metrics["room_accuracy"] == pytest.approx(float(same.flatten(1).all(1).float().mean()))
    assert metrics["codebook_usage"] == pytest.approx(float(used)) and metrics["perplexity"] == pytest.approx(
        float(perplexity)
    )


def test_dead_codes_are_restarted_from_encoder_outputs() -> None:
    vq = VectorQuantizerEMA(4, 2, decay=0.99, dead_code_steps=3).train()
    vq.initialized.fill_(True)
    far = torch.tensor([[1.0, 1.0], [50.0, 50.0], [60.0, 60.0], [70.0, 70.0]])
    vq.embedding.copy_(far)
    vq.ema_embed_sum.copy_(far)
    z = torch.ones(2, 2, 2, 2)  # eight copies of (1, 1): only code 0 is ever chosen
    for _ in range(3):
        vq(z)
    assert vq.unused_steps.tolist() == [0, 3, 3, 3]
    assert vq.embedding[1:].min() >= 49.0  # still the old codes: the restart happens on the next update
    vq(z)
    torch.testing.assert_close(vq.embedding, torch.ones(4, 2), atol=1e-3, rtol=0)  # restarted onto the data
    assert vq.unused_steps.tolist() == [0, 1, 1, 1]  # reset, then one more update without use
    assert vq.ema_cluster_size[1:].tolist() == pytest.approx([0.99] * 3)  # N = 1 at restart, then one decay


def test_first_training_update_initialises_the_codebook_from_the_data(rooms: torch.Tensor) -> None:
    model = tiny_model(2)
    z = model.encode(rooms).detach()
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    model.train()
    model.quantize(z)
    assert bool(model.quantizer.initialized)
    # Every code is one of the batch's encoder outputs, moved by one EMA step at most.
    gap = torch.cdist(model.quantizer.embedding, flat).min(dim=1).values
    assert float(gap.max()) < 0.05 * float(flat.norm(dim=1).mean())


def test_codebook_usage_values() -> None:
    used, perplexity = codebook_usage(torch.tensor([2.0, 2.0, 0.0, 0.0]))
    assert float(used) == 0.5 and float(perplexity) == pytest.approx(2.0)
    used, perplexity = codebook_usage(torch.tensor([3.0, 1.0]))
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert float(used) == 1.0 and float(perplexity) == pytest.approx(math.exp(entropy))


# ---- loss ----
def test_loss_is_weighted_ce_plus_beta_commitment(rooms: torch.Tensor) -> None:
    model = tiny_model(2).eval()  # eval: no codebook update between the two forward passes
    loss, logs = model.loss(rooms, rare_tile_weight=4.0, commitment_beta=0.5)
    out = model(rooms)
    ce = F.cross_entropy(out.logits, rooms.long(), weight=tile_class_weights(4.0))
    torch.testing.assert_close(logs["ce"], ce)
    torch.testing.assert_close(loss, ce + 0.5 * out.commit_loss)
    assert tile_class_weights(4.0).tolist() == [1.0] * DOOR + [4.0, 4.0] + [1.0] * (NUM_TILES - STAIR - 1)
    assert set(logs) == {"ce", "commit", "accuracy", "perplexity"}
    for value in logs.values():
        assert value.shape == () and not value.requires_grad
    same, _ = vqvae_loss(out, rooms, rare_tile_weight=4.0, commitment_beta=0.5)  # the DDP-friendly form
    torch.testing.assert_close(same, loss)
    plain, _ = model.loss(rooms, rare_tile_weight=1.0, commitment_beta=0.5)
    assert not torch.isclose(plain, loss)  # the rare-tile weight is applied


# ---- state ----
def test_state_dict_round_trip_is_bit_exact(rooms: torch.Tensor) -> None:
    model = tiny_model(2)
    train_steps(model, rooms, 3)
    keys = set(model.state_dict())
    for buffer in ("embedding", "ema_cluster_size", "ema_embed_sum", "unused_steps", "initialized"):
        assert f"quantizer.{buffer}" in keys
    blob = io.BytesIO()
    torch.save(model.state_dict(), blob)
    blob.seek(0)
    torch.manual_seed(123)  # a differently initialised model
    restored = tiny_model(2)
    restored.load_state_dict(torch.load(blob, weights_only=True))
    for key, value in model.state_dict().items():
        assert torch.equal(value, restored.state_dict()[key]), key
    # Training on from the restored state gives the same codebook as training on from the original.
    torch.manual_seed(7)
    restored.train()
    restored(rooms)
    torch.manual_seed(7)
    model(rooms)
    assert torch.equal(model.quantizer.embedding, restored.quantizer.embedding)


def test_same_seed_same_model(rooms: torch.Tensor) -> None:
    states = []
    for _ in range(2):
        torch.manual_seed(5)
        model = tiny_model(2)
        train_steps(model, rooms, 3)
        states.append(model.state_dict())
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


# ---- DDP ----
CODES = [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [9.0, 9.0]]  # code 3 is far from the data in [0, 2)^2


def _fresh_quantizer(dead_code_steps: int) -> VectorQuantizerEMA:
    vq = VectorQuantizerEMA(4, 2, decay=0.8, dead_code_steps=dead_code_steps).train()
    vq.initialized.fill_(True)
    vq.embedding.copy_(torch.tensor(CODES))
    vq.ema_embed_sum.copy_(torch.tensor(CODES))
    return vq


def _ddp_worker(rank: int, init_file: str, chunks: list[torch.Tensor], out_prefix: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        torch.manual_seed(rank)  # a different RNG per rank: restarts must still agree (broadcast from rank 0)
        one_update = _fresh_quantizer(dead_code_steps=100)
        one_update(chunks[rank])
        restarted = _fresh_quantizer(dead_code_steps=1)
        restarted(chunks[rank])
        restarted(chunks[rank])  # code 3 died in the first update: restarted here
        torch.save({"one_update": one_update.state_dict(), "restarted": restarted.state_dict()}, f"{out_prefix}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_ddp_all_reduces_ema_statistics(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    g = torch.Generator().manual_seed(0)
    chunks = [torch.rand(1, 2, 2, 3, generator=g) * 2.0 for _ in range(2)]  # different data per rank
    prefix = str(tmp_path / "state")
    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), chunks, prefix), nprocs=2, join=True)
    ranks = [torch.load(f"{prefix}.{rank}", weights_only=True) for rank in range(2)]
    for part in ("one_update", "restarted"):
        for key, value in ranks[0][part].items():
            assert torch.equal(value, ranks[1][part][key]), f"{part}.{key} differs between ranks"
    # One DDP update equals one single-process update on both ranks' data.
    single = _fresh_quantizer(dead_code_steps=100)
    single(torch.cat(chunks, dim=3))
    for key in ("ema_cluster_size", "ema_embed_sum", "embedding", "unused_steps"):
        torch.testing.assert_close(ranks[0]["one_update"][key], single.state_dict()[key])
    assert float(single.ema_cluster_size.sum()) == pytest.approx(0.8 * 1 * 4 + 0.2 * 12)  # all 12 vectors counted
    # The dead code was restarted onto a data vector (the same one on both ranks).
    assert float(ranks[0]["restarted"]["embedding"][3].max()) < 2.0


# ---- real corpus ----
@pytest.mark.slow
@pytest.mark.real_data
def test_short_training_on_the_real_corpus_generalises(vglc_dir: Path, tmp_path: Path) -> None:
    # The real trainer (as bench/vqvae_bar.py runs it), VQ-VAE stage only, without mirrors.
    cfg = Config.from_flat(
        {
            "num_embeddings": 128,
            "latent_dim": 32,
            "embedding_dim": 48,
            "downsample": 2,
            "vqvae_epochs": 10,
            "num_epochs": 0,
            "joint_epochs": 0,
            "learning_rate": 4e-3,
            "batch_size": 16,
            "mirror_augment": False,
            "sample_steps": 2,
            "data_dir": str(vglc_dir),
            "checkpoint_dir": str(tmp_path / "ckpt"),
            "output_dir": str(tmp_path / "out"),
        }
    )
    result = train(cfg, log=lambda msg: None)
    _, val = split_corpus(load_corpus(vglc_dir), cfg.data.val_dungeons)
    held_out = result.generator.vqvae.evaluate(val.rooms)
    losses = [r["train_loss"] for r in result.history]
    assert losses[-1] < 0.2 * losses[0]
    assert held_out["tile_accuracy"] > 0.9  # always predicting wall, the most common tile, scores ~0.5
    assert 0.0 < held_out["codebook_usage"] <= 1.0
