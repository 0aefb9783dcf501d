"""Generation quality: metrics over sets of rooms (`metrics`, pure functions), the Markov-chain reference
generator (`baselines`) and the report that scores a model, the training set and the reference alike
(`report`, used by `python -m hmolqd evaluate` and by in-training evaluation).

May import: `hmolqd.config`, `hmolqd.atomic`, `hmolqd.device`, `hmolqd.data`, `hmolqd.render`, `hmolqd.models`,
`hmolqd.sampling`, `hmolqd.checkpointing` (to load a model file).
"""
