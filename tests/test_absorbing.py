"""The absorbing-state ([MASK]) discrete diffusion math on its own (hmolqd.diffusion.absorbing)."""

from __future__ import annotations

import math

import pytest
import torch

from hmolqd.diffusion import absorbing

MASK = 7


@pytest.mark.parametrize("schedule", absorbing.MASK_SCHEDULES)
def test_mask_ratio_runs_from_nothing_to_everything(schedule: str) -> None:
    t = torch.linspace(0, 1, 11)
    m = absorbing.mask_ratio(t, schedule)
    assert m[0] == 0 and m[-1] == pytest.approx(1.0) and bool((m[1:] > m[:-1]).all())
    assert float(absorbing.mask_ratio(0.5, schedule)) == pytest.approx(
        0.5 if schedule == "linear" else math.sin(math.pi / 4)
    )
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        absorbing.mask_ratio(1.5, schedule)
    with pytest.raises(ValueError, match="mask_schedule"):
        absorbing.mask_ratio(0.5, "cubic")


def test_forward_process_masks_the_share_m_t() -> None:
    x0 = torch.randint(0, MASK, (4000, 48))
    ratio = torch.tensor([0.0, 0.3, 0.7, 1.0]).repeat_interleave(1000)
    x_t, masked = absorbing.mask_tokens(
        x0, ratio, MASK, torch.rand(x0.shape, generator=torch.Generator().manual_seed(0))
    )
    assert torch.equal(x_t == MASK, masked) and torch.equal(x_t[~masked], x0[~masked])  # kept tokens are untouched
    shares = masked.float().view(4, 1000 * 48).mean(1)
    assert shares.tolist() == pytest.approx([0.0, 0.3, 0.7, 1.0], abs=0.01)


def test_loss_is_zero_at_t0_and_the_prior_cross_entropy_at_T() -> None:
    x0 = torch.randint(0, 5, (3, 48))
    logits = torch.zeros(3, 48, 5)  # a uniform prediction
    nothing = torch.zeros(3, 48, dtype=torch.bool)
    assert absorbing.masked_cross_entropy(logits, x0, nothing).tolist() == [0.0, 0.0, 0.0]  # t = 0: nothing to predict
    everything = torch.ones(3, 48, dtype=torch.bool)  # t = T: every token from the condition alone
    assert absorbing.masked_cross_entropy(logits, x0, everything).tolist() == pytest.approx([math.log(5)] * 3)
    # Only masked positions count, averaged over them.
    half = torch.zeros(1, 4, dtype=torch.bool)
    half[0, :2] = True
    lg = torch.tensor([[[10.0, 0.0], [0.0, 10.0], [0.0, 0.0], [0.0, 0.0]]])
    assert absorbing.masked_cross_entropy(lg, torch.tensor([[0, 0, 1, 1]]), half).item() == pytest.approx(
        (math.log1p(math.exp(-10)) + 10 + math.log1p(math.exp(-10))) / 2
    )


def test_guidance_on_logits() -> None:
    c, u = torch.randn(2, 3, 6), torch.randn(2, 3, 6)
    assert torch.allclose(absorbing.guided_log_probs(c, u, 1.0), torch.log_softmax(c, -1))
    assert torch.allclose(absorbing.guided_log_probs(c, u, 0.0), torch.log_softmax(u, -1))
    g = absorbing.guided_log_probs(c, u, 3.0)
    assert torch.allclose(g.exp().sum(-1), torch.ones(2, 3))  # renormalised


def test_categorical_draws_follow_the_probabilities() -> None:
    lp = torch.log(torch.tensor([0.1, 0.6, 0.3])).expand(30000, 3)
    draws = absorbing.sample_categorical(lp, torch.rand(30000, generator=torch.Generator().manual_seed(1)))
    assert torch.bincount(draws, minlength=3).float().div(30000).tolist() == pytest.approx([0.1, 0.6, 0.3], abs=0.01)
    with pytest.raises(ValueError, match="sample_temperature"):
        absorbing.sample_categorical(lp, torch.rand(30000), temperature=0.0)


def test_random_unmasking_reveals_m_t_minus_m_s_over_m_t_and_never_changes_revealed_tokens() -> None:
    x = torch.full((2000, 48), MASK)
    x[:, :8] = 3  # already revealed
    lp = torch.log_softmax(torch.randn(2000, 48, MASK), -1)
    g = torch.Generator().manual_seed(2)
    out = absorbing.unmask_random(
        x, lp, 0.8, 0.2, MASK, torch.rand(x.shape, generator=g), torch.rand(x.shape, generator=g)
    )
    assert bool((out[:, :8] == 3).all())
    revealed = (out[:, 8:] != MASK).float().mean().item()
    assert revealed == pytest.approx(0.75, abs=0.01)  # (0.8 - 0.2) / 0.8
    last = absorbing.unmask_random(
        out, lp, 0.2, 0.0, MASK, torch.rand(x.shape, generator=g), torch.rand(x.shape, generator=g)
    )
    assert not bool((last == MASK).any())  # the last step leaves no [MASK]
    with pytest.raises(ValueError, match="m\\(s\\) < m\\(t\\)"):
        absorbing.unmask_random(x, lp, 0.2, 0.2, MASK, torch.rand(x.shape), torch.rand(x.shape))


def test_confidence_unmasking_keeps_the_least_confident_masked() -> None:
    x = torch.full((1, 4), MASK)
    lp = torch.log(torch.tensor([[[0.9, 0.1], [0.6, 0.4], [0.99, 0.01], [0.5, 0.5]]]))
    u_draw = torch.zeros(1, 4)  # inverse-CDF at 0: the first code everywhere
    out = absorbing.unmask_confidence(x, lp, 2, MASK, u_draw, torch.full((1, 4), 0.5), noise=0.0)
    assert out.tolist() == [[0, MASK, 0, MASK]]  # the two most confident draws (0.9, 0.99) are kept
    again = absorbing.unmask_confidence(out, lp, 0, MASK, u_draw, torch.full((1, 4), 0.5), noise=0.0)
    assert again.tolist() == [[0, 0, 0, 0]]


def test_step_ratios() -> None:
    r = absorbing.step_ratios(8, "cosine")
    assert len(r) == 9 and r[0] == pytest.approx(1.0) and r[-1] == 0.0
    with pytest.raises(ValueError, match="sample_steps"):
        absorbing.step_ratios(0, "cosine")
