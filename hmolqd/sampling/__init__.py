"""Generating rooms from a trained RoomModel: `generate(model, n, doors=..., stairs=..., attributes=...)`
(`generate`; the sampling settings default to those stored with the model), the discrete model's sampler
with room attributes and exact mirror axes (`discrete`), and the continuous model's decoder-gradient door
guidance (`door_guidance`).

May import: `hmolqd.config`, `hmolqd.data`, `hmolqd.diffusion`, `hmolqd.models`.
"""
