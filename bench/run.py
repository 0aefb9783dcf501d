"""The benchmark suite in one command (issue 13): where the time goes, on this machine.

    python bench/run.py --preset cpu [--quick] [--device cpu|cuda] [--out bench/results] [--busy]

Measures, through the package's own `train`, `generate` and checkpoint code: training throughput per
stage (rooms/s, optimizer steps/s; AMP on and off on a GPU), time to quality (wall time until the
in-training evaluation first reaches novel & playable >= 0.5 and >= 0.8, and a PNG of the generation
metrics over wall time), sampling throughput and quality per sampler, step count and batch (1 .. 1,024),
checkpoint costs (size, blocked time per save, total save time, load time, share of training time; sync vs
async), peak memory, and torch.compile on vs off. Writes `<out>/<machine>.json` and `<machine>.md`.

`--quick` finishes in <= 10 minutes on a 2-core CPU; its small sizes make some numbers proxies, which
the output names. `--busy` marks the results as measured on a shared machine. Exit status 1 if a
section failed (the others are still measured and written). `bench/gpu_check.py` runs it on a GPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)  # the repo's hmolqd, also where it is not pip-installed (a GPU box)

from hbench.host import REPO  # noqa: E402
from hbench.sizes import PROFILES, QUICK  # noqa: E402
from hbench.suite import SECTIONS, run_suite  # noqa: E402

from hmolqd.device import resolve_device  # noqa: E402


def default_data_dir() -> str | None:
    """$HMOLQD_VGLC_DIR, else ../shared/data/vglc-zelda beside the repo, else None (hmolqd's own discovery)."""
    env = os.environ.get("HMOLQD_VGLC_DIR")
    shared = REPO.parent / "shared" / "data" / "vglc-zelda"
    return env or (str(shared) if shared.is_dir() else None)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--preset",
        default="cpu",
        help="shipped preset (cpu, gpu, smoke) or 'notebook' (the notebook's CONFIG: the default model)",
    )
    p.add_argument(
        "--quick", action="store_true", help="small sizes: <= 10 minutes on a 2-core CPU (some numbers become proxies)"
    )
    p.add_argument(
        "--sizes",
        choices=sorted(PROFILES),
        default=None,
        help="size profile (default: full; --quick = quick; tiny = the smoke test's)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results", help="folder for <machine>.json / .md / -quality.png"
    )
    p.add_argument(
        "--data",
        default=default_data_dir(),
        help="VGLC Zelda folder (default: $HMOLQD_VGLC_DIR, ../shared/data/vglc-zelda, or discover)",
    )
    p.add_argument(
        "--busy",
        action="store_true",
        help="record machine_busy: true (a shared machine: numbers check the suite, not the speed)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the temporary training runs go (default: the system temp folder)",
    )
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick and args.sizes not in (None, "quick"):
        parser.error(f"--quick and --sizes {args.sizes} contradict each other; give one")
    args.sizes = QUICK.name if args.quick else (args.sizes or "full")
    args.data = str(Path(args.data).resolve()) if args.data else None  # absolute: recorded in every run's config.json
    sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown or not sections:
        parser.error(f"--sections: unknown {unknown or 'empty list'}; choose from {','.join(SECTIONS)}")
    args.sections = sections
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device, key="--device")
    start = time.perf_counter()
    path, results = run_suite(
        preset=args.preset,
        sizes=PROFILES[args.sizes],
        device=device,
        out_dir=args.out,
        data_dir=args.data,
        busy=args.busy,
        sections=args.sections,
        workdir=args.workdir,
    )
    print(f"[bench] wrote {path} and {path.with_suffix('.md')} in {time.perf_counter() - start:.0f} s")
    for name, err in results["errors"].items():
        print(f"[bench] FAILED {name}: {err}", file=sys.stderr)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
