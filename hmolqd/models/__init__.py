"""The neural networks: VQ-VAE tokenizer (`vqvae`, `quantizer`), the DiT denoiser (`denoiser`), the two
diffusion models over the VQ-VAE's grid - absorbing-state diffusion over its code indices (`code_diffusion`,
the default) and Gaussian diffusion over its continuous latents (`latent_diffusion`) - and the whole
`RoomModel` (`room_model`), whose `parts()` are what a checkpoint saves.

May import: `hmolqd.config`, `hmolqd.data`, `hmolqd.diffusion`.
"""
