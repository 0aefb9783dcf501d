"""`ModelConfig`: the architecture, frozen. On resume it comes from the checkpoint; a differing key is an error
(`hmolqd.config.architecture_diff`)."""

from __future__ import annotations

from dataclasses import dataclass

from hmolqd.settings.rules import booleans, check, integers_at_least, one_of

MODEL_KINDS: tuple[str, ...] = ("discrete", "continuous")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture. Changing any of these on resume is an error."""

    #: "discrete": absorbing-state [MASK] diffusion on code indices; "continuous": Gaussian diffusion on latents
    model_kind: str = "discrete"
    num_embeddings: int = 128  # VQ codebook size
    latent_dim: int = 64  # size of one code vector (channels of the latent grid)
    embedding_dim: int = 64  # hidden width of the VQ-VAE encoder/decoder
    downsample: int = 2  # room (16x11, padded to 16x12) -> latent grid 8x6 (2), 4x3 (4) or 16x12 (1)
    #: VQ-VAE encoder sees only each code's own downsample x downsample patch (a code is a patch type)
    vq_local: bool = True
    #: codebook init / dead-code restarts: "farthest" (farthest point, k-means++ draws) or "uniform" batch rows
    codebook_restart: str = "farthest"
    #: 16x11 -> 16x12: "center" duplicates column 5 (mirrored rooms get mirrored codes) or "zero" column at the right
    column_pad: str = "center"
    num_timesteps: int = 1000  # continuous: DDPM training steps T
    #: continuous: noise schedule "linear" (Ho et al. 2020) or "cosine" (Nichol & Dhariwal 2021)
    schedule: str = "cosine"
    prediction: str = "v"  # continuous: denoiser target "eps" or "v" (Salimans & Ho 2022)
    #: discrete: masked fraction m(t): "linear" m = t (D3PM absorbing) or "cosine" m = sin(pi t / 2) (MaskGIT)
    mask_schedule: str = "cosine"
    denoiser_dim: int = 128  # width of the denoiser
    denoiser_depth: int = 1  # number of denoiser blocks
    denoiser_dropout: float = 0.0  # discrete: dropout on the denoiser blocks' residual branches while training
    attn_radius: int = 1  # discrete: a code cell attends to the cells within this Chebyshev distance (0 = all cells)
    cond_stairs: bool = True  # condition on has-stairs as well as the 4 door sides
    #: discrete: also condition on room attributes (monsters, water, playable, symmetric, mirror axes)
    cond_attributes: bool = True
    cond_in_context: bool = False  # also feed each condition as a token the latent tokens attend to (DiT sec. 3.2)

    def __post_init__(self) -> None:
        sizes = ("num_embeddings", "latent_dim", "embedding_dim", "num_timesteps", "denoiser_dim", "denoiser_depth")
        integers_at_least(self, sizes, 1)
        check(self.num_embeddings >= 2, "num_embeddings", "a codebook needs at least 2 codes", self.num_embeddings)
        one_of(self, "downsample", (1, 2, 4))
        one_of(self, "schedule", ("linear", "cosine"))
        one_of(self, "prediction", ("eps", "v"))
        booleans(self, ("cond_in_context",))
        one_of(self, "model_kind", MODEL_KINDS)
        one_of(self, "codebook_restart", ("farthest", "uniform"))
        one_of(self, "column_pad", ("center", "zero"))
        one_of(self, "mask_schedule", ("linear", "cosine"))
        integers_at_least(self, ("attn_radius",), 0)
        check(0 <= self.denoiser_dropout < 1, "denoiser_dropout", "must be in [0, 1)", self.denoiser_dropout)
