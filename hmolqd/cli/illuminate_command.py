"""`python -m hmolqd illuminate`: check the flags, reuse a finished archive's report, or run the search (on worker
processes, or on a Dask cluster with --dask) and say what it wrote."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hmolqd.cli import args as check
from hmolqd.config import ConfigError
from hmolqd.device import resolve_device


def illuminate(args: argparse.Namespace) -> int:
    check.seed("--seed", args.seed)
    check.at_least("--steps", args.steps, 1, "sampling steps")
    check.dask_address("--dask", args.dask)
    check.at_least("--workers", args.workers, 1, "processes; 1 runs everything in this process")
    check.at_most("--workers", args.workers, 4 * check.cores(), f"processes: this machine has {check.cores()} cores")
    check.model_file(args.model)
    device = resolve_device(args.device, "--device")
    out = args.out or args.model.with_name("illuminate")
    check.folder_target("--out", out)  # the default too: beside a read-only model it cannot be written
    sampling = {} if args.steps is None else {"steps": args.steps}
    from hmolqd.checkpointing.export import load_model

    # loaded once, for the finished-report check and the run, on the device the rooms are sampled on
    model = load_model(args.model).to(device)
    with dask_client(args.dask, args.chunks) as client:
        return _run_illuminate(args, model, out, sampling, client)


@contextlib.contextmanager
def dask_client(address: str | None, chunks: int) -> Iterator[Any]:
    """None (in-process), or a Dask client of `address` ('local': a LocalCluster, one process per chunk, at
    most one per core: each holds its own copy of the room model)."""
    if address is None:
        yield None
        return
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("--dask: needs Dask (pip install 'hmolqd[dask]')") from None
    if address == "local":
        workers = max(1, min(chunks, check.cores()))
        with LocalCluster(n_workers=workers, threads_per_worker=1) as cluster, Client(cluster) as client:
            yield client
    else:
        try:
            client = Client(address, timeout=20)
        except (OSError, ValueError, TypeError) as err:  # no scheduler there, or an address Dask cannot use
            raise ConfigError(f"--dask {address}: no Dask scheduler answered ({err})") from None
        with client:
            yield client


def _run_illuminate(args: argparse.Namespace, model: Any, out: Path, sampling: dict[str, Any], client: Any) -> int:
    from hmolqd.illuminate import IlluminateError, illuminate
    from hmolqd.illuminate.api import finished_run

    search = {
        "descriptors": args.descriptors,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "mode": args.mode,
        "chunks": args.chunks,
    }
    try:
        done = finished_run(model, evaluations=args.evaluations, out=out, **search, **sampling)
        if done is not None:  # a re-run of a finished archive: its report, no pyribs, nothing unpickled or written
            _illuminate_report(done["stats"], done["notes"], 0, out)
            return 0
        result = illuminate(
            model,
            evaluations=args.evaluations,
            out=out,
            client=client,
            workers=args.workers,
            progress=lambda h: print(
                f"{h['evaluations']} evaluations: coverage {100 * h['coverage']:.1f} %, QD score {h['qd_score']:.1f}",
                file=sys.stderr,
            ),
            **search,
            **sampling,
        )
    except IlluminateError as err:  # bad input: one line, like the other subcommands' errors
        raise ConfigError(str(err)) from None
    _illuminate_report(result.stats, result.notes, result.written, out)
    return 0


def _illuminate_report(s: dict[str, Any], notes: Sequence[str], written: int, out: Path) -> None:
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(
        f"{s['elites']} elites in {s['cells']} cells: coverage {100 * s['coverage']:.1f} %, "
        f"QD score {s['qd_score']:.2f}, "
        f"{100 * (s['beaten_elites'] or 0):.1f} % of elites beaten"
    )
    if written:
        print(
            f"wrote {written} files in {out}: heatmap.png, elites.png, summary.json, elites/ (VGLC text, .dot, "
            "PNG, JSON per elite); the archive is archive.pt"
        )
    else:
        print(f"the outputs in {out} are up to date: no file written")
