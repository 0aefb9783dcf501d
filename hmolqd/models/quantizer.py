"""Vector quantizer with an exponential-moving-average codebook and dead-code restart.

Math (van den Oord et al. 2017, "Neural Discrete Representation Learning", section 3.2 and appendix A.1):

* Each latent vector z (one per cell of the latent grid) is replaced by its nearest code e_k,
  k = argmin_j ||z - e_j||^2 (ties go to the lowest index).
* Straight-through estimator: the forward value is e_k, the backward pass copies the gradient at e_k
  unchanged to z (`z + (e_k - z).detach()`).
* Commitment loss ||z - sg(e_k)||^2 (mean over elements) pulls the encoder towards its codes; the trainer
  weights it by `commitment_beta`.
* The codebook is not trained by gradient: with n_i the number of vectors assigned to code i in the batch and
  s_i their sum, and decay gamma,
      N_i <- gamma * N_i + (1 - gamma) * n_i
      m_i <- gamma * m_i + (1 - gamma) * s_i
      e_i  = m_i / N~_i,   N~_i = (N_i + eps) / (sum_j N_j + K * eps) * sum_j N_j
  (N~ is the Laplace-smoothed count that keeps a code with N_i ~ 0 finite, as in the Sonnet reference code).
* Dead-code restart: a code assigned no vector for `dead_code_steps` consecutive training updates is
  re-initialised, at the start of the next update, from a uniformly drawn encoder output of that batch (torch's
  global RNG, drawn on every training update, so it is deterministic for a seed), with N_i = 1 and m_i = e_i so
  that an EMA step without assignments keeps it in place.
* On the first training update the whole codebook is initialised the same way (data-dependent
  initialisation), so no code starts far from the encoder outputs.
* `restart="farthest"` (ModelConfig.codebook_restart) draws those rows by distance instead: the first
  initialisation is farthest-point sampling of the batch (Gonzalez 1985), so K >= the number of distinct
  inputs gives each its own code, and a restart draws rows with probability ~ squared distance to their
  nearest code (k-means++ seeding, Arthur & Vassilvitskii 2007), so a rare patch that shares a code with a
  common one gets a code of its own. Whether the first initialisation is done is read to the host only until
  it is seen done (`_initialization_done`), so later updates need no host sync for it.

The codebook and all EMA statistics are registered buffers: `state_dict()` holds the whole quantizer state.
Under DDP (torch.distributed initialised) n_i and s_i are all-reduced before the EMA step, and restarted codes
are broadcast from rank 0, so every rank keeps the identical codebook.
EMA updates and restarts happen only in training mode; in eval mode the quantizer is a pure lookup.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

LAPLACE_EPS = 1e-5


class QuantizeOut(NamedTuple):
    z_q: torch.Tensor  # (B, D, h, w) quantized latents, straight-through: grad flows to the encoder output
    indices: torch.Tensor  # (B, h, w) long, chosen code per latent cell
    commit_loss: torch.Tensor  # () mean ||z - sg(z_q)||^2
    perplexity: torch.Tensor  # () exp(entropy) of this batch's code histogram


def nearest_code(flat: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """(N, D) vectors, (K, D) codebook -> (N,) long index of the nearest code (squared L2, lowest index on ties)."""
    # ||z||^2 - 2 z.e + ||e||^2 without materialising (N, K, D).
    dist2 = flat.pow(2).sum(1, keepdim=True) - 2.0 * flat @ codebook.t() + codebook.pow(2).sum(1)[None, :]  # (N, K)
    return dist2.argmin(dim=1)


def code_histogram(indices: torch.Tensor, num_embeddings: int) -> torch.Tensor:
    """Any-shape long indices -> (K,) float counts of each code. Added up with `index_add_`, not `bincount`: on CUDA
    bincount reads the largest index to the host, a sync in every training step; the counts are the same integers."""
    flat = indices.reshape(-1)
    ones = torch.ones(flat.shape, dtype=torch.float32, device=flat.device)
    return torch.zeros(num_embeddings, device=flat.device).index_add_(0, flat, ones)


def codebook_usage(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(K,) code counts -> (fraction of codes used at least once, perplexity = exp(entropy of the histogram)).

    Perplexity ranges from 1 (one code used) to K (uniform use). Returns 0-dim tensors (no host sync).
    """
    total = counts.sum().clamp_min(1.0)
    probs = counts / total
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum()
    used = (counts > 0).to(torch.float32).mean()
    return used, torch.exp(entropy)


def ema_codebook_step(
    cluster_size: torch.Tensor, embed_sum: torch.Tensor, counts: torch.Tensor, sums: torch.Tensor, decay: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One EMA codebook step (van den Oord et al. 2017, appendix A.1); pure function.

    cluster_size (K,) N, embed_sum (K, D) m, counts (K,) n, sums (K, D) s -> (new N, new m, new codebook (K, D)).
    """
    new_size = decay * cluster_size + (1.0 - decay) * counts
    new_sum = decay * embed_sum + (1.0 - decay) * sums
    total = new_size.sum()
    k = new_size.shape[0]
    smoothed = (new_size + LAPLACE_EPS) / (total + k * LAPLACE_EPS) * total  # Laplace smoothing
    return new_size, new_sum, new_sum / smoothed[:, None]


def farthest_point_picks(flat: torch.Tensor, k: int, first: int) -> torch.Tensor:
    """`(k,)` row indices of `flat (N, D)`: row `first`, then each time the row farthest from those picked."""
    chosen = [first]
    d2 = (flat - flat[first]).square().sum(1)  # (N,) squared distance to the nearest pick
    for _ in range(k - 1):
        nxt = int(d2.argmax())
        chosen.append(nxt)
        d2 = torch.minimum(d2, (flat - flat[nxt]).square().sum(1))
    return torch.tensor(chosen, device=flat.device)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


class VectorQuantizerEMA(nn.Module):
    """`(B, D, h, w)` latents -> nearest of `num_embeddings` codes of size `dim`, EMA-updated codebook."""

    def __init__(
        self, num_embeddings: int, dim: int, decay: float = 0.99, dead_code_steps: int = 50, restart: str = "uniform"
    ) -> None:
        super().__init__()
        if restart not in ("uniform", "farthest"):
            raise ValueError(f"codebook_restart = {restart!r}: must be 'uniform' or 'farthest'")
        self.restart = restart
        if num_embeddings < 2:
            raise ValueError(f"num_embeddings = {num_embeddings}: a codebook needs at least 2 codes")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"codebook_decay = {decay}: must be in [0, 1)")
        if dead_code_steps < 1:
            raise ValueError(f"dead_code_steps = {dead_code_steps}: must be >= 1")
        self.num_embeddings = num_embeddings
        self.dim = dim
        self.decay = float(decay)
        self.dead_code_steps = int(dead_code_steps)
        embedding = torch.randn(num_embeddings, dim)
        self.register_buffer("embedding", embedding)  # (K, D) the codebook e
        self.register_buffer("ema_cluster_size", torch.ones(num_embeddings))  # (K,) N
        self.register_buffer("ema_embed_sum", embedding.clone())  # (K, D) m
        # (K,) updates since last use
        self.register_buffer("unused_steps", torch.zeros(num_embeddings, dtype=torch.long))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))  # data-dependent init done
        self._seen_initialized = False  # `initialized` was read as True (`_initialization_done`)

    def _initialization_done(self) -> bool:
        """`initialized`, read to the host (a sync) only until it is seen True: nothing but a state load makes it
        False again, and a load forgets what was seen (`_load_from_state_dict`)."""
        if not self._seen_initialized:
            self._seen_initialized = bool(self.initialized)
        return self._seen_initialized

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._seen_initialized = False  # the loaded buffer decides again
        super()._load_from_state_dict(*args, **kwargs)

    def extra_repr(self) -> str:
        return (
            f"num_embeddings={self.num_embeddings}, dim={self.dim}, decay={self.decay}, "
            f"dead_code_steps={self.dead_code_steps}, restart={self.restart}"
        )

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, h, w) long -> (B, D, h, w) code vectors."""
        return self.embedding[indices].permute(0, 3, 1, 2).contiguous()

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) -> (B, h, w) long index of the nearest code (no state change)."""
        b, d, h, w = z.shape
        if d != self.dim:
            raise ValueError(f"latents have {d} channels, the codebook has code size {self.dim} (latent_dim)")
        flat = z.detach().float().permute(0, 2, 3, 1).reshape(-1, d)  # (B*h*w, D)
        with torch.autocast(device_type=z.device.type, enabled=False):  # float32 distances, as in `forward`
            return nearest_code(flat, self.embedding).view(b, h, w)

    def forward(self, z: torch.Tensor) -> QuantizeOut:
        # The codebook math runs in float32 even under autocast: bf16 distances mis-assign codes.
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = z.float()
            b, d, h, w = z.shape
            flat = z.detach().permute(0, 2, 3, 1).reshape(-1, d)  # (N, D), N = B*h*w
            if self.training:
                self._restart_dead(flat)
            indices = nearest_code(flat, self.embedding)  # (N,)
            counts = code_histogram(indices, self.num_embeddings)  # (K,)
            # Gather before the EMA step (a copy), so z_q holds the codes the indices were chosen against.
            z_q = self.embedding[indices].view(b, h, w, d).permute(0, 3, 1, 2)  # (B, D, h, w)
            if self.training:
                self._ema_update(flat, indices, counts)
            commit_loss = F.mse_loss(z, z_q.detach())
            z_q = z + (z_q - z).detach()  # straight-through estimator
            _, perplexity = codebook_usage(counts)
        return QuantizeOut(z_q, indices.view(b, h, w), commit_loss, perplexity)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor) -> None:
        sums = torch.zeros_like(self.ema_embed_sum).index_add_(0, indices, flat)  # (K, D) s_i
        counts = counts.clone()
        if _distributed():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        size, embed_sum, codebook = ema_codebook_step(
            self.ema_cluster_size, self.ema_embed_sum, counts, sums, self.decay
        )
        self.ema_cluster_size.copy_(size)
        self.ema_embed_sum.copy_(embed_sum)
        self.embedding.copy_(codebook)
        used = counts > 0  # identical on every rank: counts were all-reduced
        self.unused_steps.copy_(torch.where(used, torch.zeros_like(self.unused_steps), self.unused_steps + 1))

    @torch.no_grad()
    def _restart_dead(self, flat: torch.Tensor) -> None:
        """Re-initialise every code (first update) or the dead ones from random rows of `flat` (N, D).

        Runs on every training update without a host sync: the draw has a fixed size, so the RNG stream does
        not depend on how many codes died, and a step with no dead code leaves the buffers unchanged.
        """
        dead = (self.unused_steps >= self.dead_code_steps) | ~self.initialized  # (K,)
        picks = torch.randint(0, flat.shape[0], (self.num_embeddings,), device=flat.device)  # (K,)
        if self.restart == "farthest" and not self._initialization_done():
            picks = farthest_point_picks(flat, self.num_embeddings, int(picks[0]))
        elif self.restart == "farthest":
            d2 = torch.cdist(flat, self.embedding).amin(1).square()  # (N,) to the nearest code
            picks = torch.multinomial(d2 + 1e-12, self.num_embeddings, replacement=True)  # (K,)
        fresh = flat[picks]  # (K, D)
        if _distributed():
            dist.broadcast(fresh, src=0)  # every rank restarts to rank 0's vectors
        mask = dead[:, None]
        self.embedding.copy_(torch.where(mask, fresh, self.embedding))
        self.ema_embed_sum.copy_(torch.where(mask, fresh, self.ema_embed_sum))
        self.ema_cluster_size.copy_(torch.where(dead, torch.ones_like(self.ema_cluster_size), self.ema_cluster_size))
        self.unused_steps.masked_fill_(dead, 0)
        self.initialized.fill_(True)
        self._seen_initialized = True  # set just now: no need to read it back
