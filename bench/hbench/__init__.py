"""The benchmark suite of issue 13: where the time goes, measured through the package's own code.

    python bench/run.py --preset cpu [--quick] [--device cpu|cuda] [--out bench/results]

Each measurement is one function that calls the real `hmolqd.train`, `hmolqd.generate` and the
checkpoint code (never a re-implemented loop); `suite.run_suite` runs them in turn and `report` writes
`<out>/<machine>.json`, `<machine>.md` and `<machine>-quality.png`. No test asserts on a time.

    sizes.py      how big each measurement is: full, quick (<= 10 min on a 2-core CPU), tiny (the smoke test), gpu
    host.py       host facts, the machine slug, peak memory
    trainbench.py training throughput per stage, time to quality (the trainer's history records, timed)
    samplebench.py sampling throughput and quality per sampler, step count and batch
    ckptbench.py  checkpoint size, blocked / total save time, load time, share of training time, sync vs async
    compilebench.py torch.compile on vs off on the denoiser forward
    report.py     JSON, Markdown table, quality-over-time PNG
    suite.py      the context shared by the measurements and `run_suite`

bench/gpu_check.py (issue 29's one GPU script) adds:

    stepbench.py  the trainer's training step per preset, precision and stage (median steps/s, host syncs)
    gpuruns.py    the time budget; `train` and `illuminate` timed as commands, `generate` rooms/s
    killresume.py SIGKILL and resume per mixed-precision dtype
    gpureport.py  its Markdown page
"""
