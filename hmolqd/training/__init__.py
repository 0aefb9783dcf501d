"""Training: `loop.train(cfg)` (the resumable loop over all stages), `startup` (a call's data, model,
checkpoint manager and resumed state, held in a `Run`), `stages` (loss modules and their data),
`progress` (the counters of where training stands and the arithmetic of epochs),
`optim` (AdamW, the LR schedule and the one optimizer step), `validation`, `runtime` (device, AMP, DDP,
signals, time budget), `history`, `outputs` (what a run leaves in output_dir), `selfcheck` (the
checkpoint self-check the second notebook runs; its train-interrupt-resume check in
`selfcheck_resume`) and `trainee` (the tiny trainee those checks use).

May import every layer below it: config, atomic, device, data, render, diffusion, models, sampling,
checkpointing, evaluation.
"""
