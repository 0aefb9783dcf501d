"""Generating rooms from a trained RoomModel: `generate(model, n, doors=..., stairs=..., ...)` (`generate`)
and decoder-gradient door guidance (`door_guidance`).

May import: `hmolqd.config`, `hmolqd.data`, `hmolqd.diffusion`, `hmolqd.models`.
"""
