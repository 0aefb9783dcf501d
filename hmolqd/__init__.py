"""hmolqd: a VQ-VAE + latent diffusion generator of The Legend of Zelda dungeon rooms (VGLC)."""

from hmolqd.config import Config, ConfigError

__all__ = ["Config", "ConfigError"]
__version__ = "0.1.0"
