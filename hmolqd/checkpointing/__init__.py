"""Checkpoints that never lose work.

`fileformat`: one file (names, atomic write once plus hard links; re-exports `verify`); `verify`: what a valid
file is (weights-only format, integrity digest) and loading one with the reason it is refused; `manager`: when
to save (latest / epoch / step / best, inline or background writes, what saving cost); `retention`: what is
kept (rotation, disk budget); `writer`: the snapshot into reused host buffers and the background writer
thread; `lock`: the checkpoint directory checked up front and locked for one training; `identity`: the run a
directory belongs to (`run.json`); `resume`: which file a run resumes from and whether the config may resume
it; `candidates`: the files a resume ranks and the newest that loads; `inputs`: a previous session's output to
continue (`resume_input`); `lineage`: other runs' files set aside before a training writes; `restore`: loading
states into live objects; `rng`: every RNG's state as plain data; `export`: the inference-only
`model_final.pt` and `load_model`; `compare`: tensor-by-tensor comparison of saved states.

May import: `hmolqd.config`, `hmolqd.atomic`, `hmolqd.models` (export only).
"""
