"""The context the measurements share, the configurations they start from, and `run_suite`.

`run_suite` runs each section in turn, records its result (or its error) and its peak memory, and
rewrites the JSON and Markdown after every section, so an interrupted run still leaves what it measured.
"""

from __future__ import annotations

import ast
import json
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from hbench.host import REPO, host_facts, machine_slug, memory_meter
from hbench.sizes import Sizes
from hmolqd.config import Config
from hmolqd.data import augment_mirror, find_data_dir, load_corpus, split_corpus
from hmolqd.data.dataset import Corpus
from hmolqd.training.runtime import amp_dtype_for

NOTEBOOK = REPO / "train_h_molqd_kaggle.ipynb"
SECTIONS = ("training", "time_to_quality", "sampling", "checkpoints", "compile")


def notebook_defaults(path: Path = NOTEBOOK) -> dict[str, Any]:
    """The flat `CONFIG = {...}` dict of the Kaggle notebook (what a Kaggle user trains with)."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        try:
            tree = ast.parse("".join(cell["source"]))
        except SyntaxError:
            continue  # a cell with IPython magics holds no CONFIG
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "CONFIG" for t in node.targets):
                return ast.literal_eval(node.value)
    raise ValueError(f"{path}: no code cell assigns CONFIG = {{...}}")


def base_config(preset: str) -> Config:
    """`notebook` (alias `default`): the notebook's CONFIG, i.e. the default model; else a shipped preset."""
    if preset in ("notebook", "default"):
        return Config.from_flat(notebook_defaults())
    return Config.preset(preset)


@dataclass
class Context:
    workdir: Path
    device: torch.device
    data_dir: str | None
    sizes: Sizes
    say: Callable[[str], None] = print
    _corpus: dict[tuple[str, ...], Corpus] = field(default_factory=dict)

    def config(self, base: Config, folder: str, **flat: Any) -> Config:
        """`base` with this run's data, device, a fresh folder (also the run name) under workdir, and `flat` on top."""
        root = self.workdir / folder
        run = {
            "name": folder,
            "data_dir": self.data_dir,
            "device": str(self.device),
            "checkpoint_dir": str(root / "ckpt"),
            "output_dir": str(root / "out"),
            "auto_resume": False,
            "resume_from": None,
            "max_runtime_hours": 0.0,
        }
        return base.with_overrides(**{**run, **flat})

    def discard(self, cfg: Config) -> None:
        """Delete a finished run's folder (checkpoint runs of the default model write about 1 GB)."""
        shutil.rmtree(Path(cfg.paths.checkpoint_dir).parent, ignore_errors=False)

    def training_corpus(self, cfg: Config) -> Corpus:
        """The rooms the run trains on (and generated rooms are compared to): training split, mirrors if configured."""
        key = (*cfg.data.val_dungeons, str(cfg.data.mirror_augment))
        if key not in self._corpus:
            train, _ = split_corpus(load_corpus(find_data_dir(self.data_dir)), cfg.data.val_dungeons)
            self._corpus[key] = augment_mirror(train) if cfg.data.mirror_augment else train
        return self._corpus[key]

    def training_rooms(self, cfg: Config) -> int:
        """Rooms per training epoch: the training corpus and its `door_augment` redrawn-door copies."""
        return len(self.training_corpus(cfg).rooms) * (1 + cfg.data.door_augment)

    def amp_name(self, amp: bool) -> str:
        return (
            str(amp_dtype_for(self.device, amp)).replace("torch.", "")
            if amp_dtype_for(self.device, amp)
            else "off (fp32)"
        )


def run_suite(
    *,
    preset: str,
    sizes: Sizes,
    device: torch.device,
    out_dir: Path,
    data_dir: str | None,
    busy: bool,
    sections: tuple[str, ...] = SECTIONS,
    workdir: Path | None = None,
    say: Callable[[str], None] = print,
    extra: dict[str, Any] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Measure every section, write `<out_dir>/<machine>.json` / `.md` / `-quality.png`; returns the JSON path and
    results."""
    from hbench import ckptbench, compilebench, report, samplebench, trainbench

    facts = host_facts(device, sizes=sizes.name, busy=busy)
    machine = machine_slug(facts)
    base = base_config(preset)
    results: dict[str, Any] = {
        "machine": machine,
        "host": facts,
        "preset": preset,
        "sizes": asdict(sizes),
        "proxies": sizes.proxies,
        "model_parameters": None,
        "sections": {},
        "memory": {},
        "errors": {},
        **(extra or {}),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    suite_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hmolqd_bench_", dir=workdir) as tmp:
        ctx = Context(Path(tmp), device, data_dir, sizes, say)
        trained: dict[str, Any] = {}

        def ttq() -> dict[str, Any]:
            measured, result = trainbench.time_to_quality(ctx, base)
            trained["model"] = result.generator
            results["model_parameters"] = {
                name: sum(p.numel() for p in part.parameters()) for name, part in result.generator.parts().items()
            }
            return measured

        def sampling() -> dict[str, Any]:
            if "model" not in trained:
                raise RuntimeError("sampling measures the time-to-quality run's model, and that run did not finish")
            return samplebench.sampling_throughput(ctx, trained["model"])

        def compiled() -> dict[str, Any]:
            model = trained.get("model")
            return compilebench.compile_speed(ctx, base if model is None else model.config, model)

        amps = (True, False) if device.type == "cuda" else (False,)
        runs: dict[str, Callable[[], Any]] = {
            "training": lambda: [trainbench.training_throughput(ctx, base, amp) for amp in amps],
            "time_to_quality": ttq,
            "sampling": sampling,
            "checkpoints": lambda: ckptbench.checkpoint_costs(
                ctx, base if sizes.checkpoint_model == "preset" else base_config("notebook")
            ),
            "compile": compiled,
        }
        for name in sections:
            say(f"[bench] {name} ...")
            start = time.perf_counter()
            with memory_meter(device) as mem:
                try:
                    results["sections"][name] = runs[name]()
                except Exception as err:  # recorded in the results and the exit status; the other sections still run
                    results["errors"][name] = f"{type(err).__name__}: {err}"
                    say(traceback.format_exc())
            results["memory"][name] = {**mem, "seconds": round(time.perf_counter() - start, 1)}
            say(
                f"[bench] {name}: {'FAILED: ' + results['errors'][name] if name in results['errors'] else 'done'} "
                f"({results['memory'][name]['seconds']:.0f} s)"
            )
            results["suite_wall_s"] = round(time.perf_counter() - suite_start, 1)
            path = report.write_results(results, out_dir)
    return path, results
