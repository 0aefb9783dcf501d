"""The neural networks: VQ-VAE tokenizer (`vqvae`, `quantizer`), the DiT denoiser (`denoiser`), latent
diffusion over the VQ-VAE's latent grid (`latent_diffusion`) and the whole `RoomModel` (`room_model`),
whose `parts()` are what a checkpoint saves.

May import: `hmolqd.config`, `hmolqd.data`, `hmolqd.diffusion`.
"""
