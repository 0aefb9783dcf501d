"""Checkpoints that never lose work.

`fileformat`: one file (names, weights-only format, integrity digest, atomic write, loading with reasons);
`manager`: when to save and what to keep (latest / epoch / step / best, rotation, disk budget);
`resume`: which file a run resumes from and whether the config may resume it; `restore`: loading states
into live objects; `rng`: every RNG's state as plain data; `export`: the inference-only `model_final.pt`
and `load_model`; `compare`: tensor-by-tensor comparison of saved states.

May import: `hmolqd.config`, `hmolqd.atomic`, `hmolqd.models` (export only).
"""
