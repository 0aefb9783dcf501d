"""The suite's files: `<machine>.json` (everything), `<machine>.md` (the tables) and `<machine>-quality.png`
(generation metrics of the in-training evaluation over wall time)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from hmolqd.atomic import atomic_write_bytes, atomic_write_text
from hmolqd.evaluation.report import json_safe

PLOTTED = ("novel_playable", "playable", "novel", "symmetric", "distinct", "door_adherence")


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else digits  # rates and seconds: no false precision
    return f"{value:,.{digits}f}"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(_f(c) if not isinstance(c, str) else c for c in r) + " |" for r in rows
    ]


def plot_quality(curve: list[dict[str, Any]], path: Path, title: str) -> Path:
    fig = Figure(figsize=(7, 4.2), dpi=100)
    ax = fig.subplots()
    for key in PLOTTED:
        pts = [(p["wall_s"], p[key]) for p in curve if isinstance(p.get(key), (int, float))]
        if pts:
            ax.plot(*zip(*pts), "o-", markersize=3, label=key)
    for level in (0.5, 0.8):
        ax.axhline(level, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("wall time since train() began (s)")
    ax.set_ylabel("share of generated rooms")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=9)
    if ax.lines:
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
    return path


def _training(sec: list[dict[str, Any]]) -> list[str]:
    rows = []
    for run in sec:
        for stage, m in run["stages"].items():
            if "error" in m:
                rows.append([stage, run["amp_dtype"], m["error"], "", "", ""])
            else:
                rows.append(
                    [stage, run["amp_dtype"], m["epochs_timed"], m["steps_per_s"], m["rooms_per_s"], m["first_epoch_s"]]
                )
    return [
        "## Training throughput",
        "",
        f"Batch {sec[0]['batch_size']}, {sec[0]['rooms_per_epoch']} rooms per epoch; "
        "epochs 2 .. E-1 of each stage timed (no validation, evaluation or checkpoint in between).",
        "",
        *_table(["stage", "AMP", "epochs timed", "optimizer steps/s", "rooms/s", "first epoch s (incl. setup)"], rows),
    ]


def _ttq(sec: dict[str, Any], png: str) -> list[str]:
    s = sec["settings"]
    rows = [
        [k, *(["not reached", "", ""] if v is None else [v["wall_s"], f"{v['stage']} {v['epoch']}", v["step"]])]
        for k, v in sec["reached"].items()
    ]
    last = sec["curve"][-1] if sec["curve"] else {}
    return [
        "## Time to quality",
        "",
        f"{s['vqvae_epochs']} VQ-VAE + {s['num_epochs']} diffusion epochs, evaluation every {s['sample_every']} "
        "epochs on "
        f"{s['eval_samples']} rooms ({s['sample_steps']} steps, guidance {s['guidance_scale']}, door guidance "
        f"{s['door_guidance']}); "
        f"wall clock: {sec['wall_clock']}. Training ended at {_f(sec['training_end_s'], 1)} s; last evaluation: "
        f"novel & playable {_f(last.get('novel_playable'))}, playable {_f(last.get('playable'))}, symmetric "
        f"{_f(last.get('symmetric'))}.",
        "",
        *_table(["novel & playable", "wall s", "stage / epoch", "step"], rows),
        "",
        f"![quality over wall time]({png})",
    ]


def _sampling(sec: dict[str, Any]) -> list[str]:
    q = {(r["sampler"], r["steps"]): r for r in sec["quality"]}
    rows = []
    for r in sec["throughput"]:
        m = q.get((r["sampler"], r["steps"]), {})
        rows.append(
            [
                r["sampler"],
                r["steps"],
                r["batch"],
                r["rooms_per_s"],
                m.get("playable"),
                m.get("novel_playable"),
                m.get("symmetric"),
                m.get("distinct"),
                m.get("door_adherence"),
                m.get("pattern_kl_train_gen"),
            ]
        )
    return [
        "## Sampling",
        "",
        f"Samplers from {sec['samplers_from']}; {sec['conditions']}; quality {sec['quality_note']}.",
        "",
        *_table(
            [
                "sampler",
                "steps",
                "batch",
                "rooms/s",
                "playable",
                "novel & playable",
                "symmetric",
                "distinct",
                "door adherence",
                "2x2 KL",
            ],
            rows,
        ),
    ]


def _checkpoints(sec: dict[str, Any]) -> list[str]:
    rows = []
    for mode in ("sync", "async"):
        m = sec.get(mode, {})
        if "saves" not in m:
            rows.append([mode, m.get("status", "not measured"), *[""] * 10])
            continue
        at = m["at_cadence"]
        rows.append(
            [
                mode,
                m["saves"],
                m["file_mib"],
                m["bytes_written_per_save_mib"],
                m["blocked_per_save_s"],
                m["blocked_total_s"],
                m["write_total_s"],
                m["flush_s"],
                m["load_s"],
                m["train_wall_s"],
                f"{100 * m['share_of_train_wall']:.2f} %",
                "n/a"
                if at["share"] is None
                else f"{100 * at['share']:.2f} % (a save every {at['seconds_between_saves']:.0f} s)",
            ]
        )
    c = sec["cadence"]
    ratio = sec.get("async_blocked_vs_sync_save")
    return [
        "## Checkpoints",
        "",
        f"{sec['run']}. Cadence projected (the config's): checkpoint_every={c['checkpoint_every']}, "
        f"checkpoint_every_minutes={c['checkpoint_every_minutes']}, "
        f"checkpoint_every_steps={c['checkpoint_every_steps']}."
        + (
            ""
            if ratio is None
            else f" Async blocked time per save = {100 * ratio:.1f} % of a sync save (target <= 10 %)."
        ),
        "",
        *_table(
            [
                "mode",
                "saves",
                "file MiB",
                "written per save MiB",
                "blocked per save s",
                "blocked total s",
                "write total s",
                "exit flush s",
                "load s",
                "training s",
                "blocked share (every epoch)",
                "blocked share at the cadence (projected)",
            ],
            rows,
        ),
        "",
        "Blocked: time the training thread spent in save calls. Write: serialise, checksum, write, fsync, rename, "
        "rotate "
        "(inside the blocked time when sync, on a background thread when async). Training s: train() start to the "
        "last epoch's end. "
        "Projected share: blocked time per save over the time between saves at the cadence above, with this run's "
        "diffusion epoch time.",
    ]


def _compile(sec: dict[str, Any]) -> list[str]:
    row = [
        sec["batch"],
        sec["eager_ms"],
        sec.get("compiled_ms", sec.get("error", "")),
        sec.get("compile_s"),
        sec.get("speedup"),
        sec["faster"],
    ]
    return [
        "## torch.compile (denoiser forward)",
        "",
        *_table(["batch", "eager ms", "compiled ms", "compile s", "speedup", "faster"], [row]),
        "",
        sec["verdict"] + ".",
    ]


def _memory(results: dict[str, Any]) -> list[str]:
    rows = [
        [name, m.get("seconds"), m.get("host_peak_rss_mib"), m.get("cuda_max_allocated_mib", "n/a")]
        for name, m in results["memory"].items()
    ]
    return [
        "## Time and peak memory per section",
        "",
        "Host peak RSS is the process's peak so far (getrusage); CUDA max allocated is per section.",
        "",
        *_table(["section", "seconds", "host peak RSS MiB", "CUDA max allocated MiB"], rows),
    ]


def markdown(results: dict[str, Any], png_name: str) -> str:
    h = results["host"]
    where = f"{h.get('gpu_name')} (CUDA {h.get('cuda_version')})" if str(h["device"]).startswith("cuda") else "CPU"
    lines = [
        f"# Benchmarks: {results['machine']}",
        "",
        f"`python bench/run.py --preset {results['preset']}{' --quick' if h['quick'] else ''}` on {where}: "
        f"{h['cpu_model']}, "
        f"{h['cpu_cores_usable']} cores, {h['torch_threads']} torch threads, torch {h['torch_version']}, {h['date']}, "
        f"sizes `{h['sizes']}`, suite wall time {_f(results.get('suite_wall_s'), 0)} s.",
        "",
    ]
    if h["machine_busy"]:
        lines += [
            "**Measured on a busy, shared machine: these numbers check that the suite works; they are not "
            "benchmarks.**",
            "",
        ]
    if results["proxies"]:
        lines += [f"*{results['proxies']}.*", ""]
    sections = results["sections"]
    writers = {
        "training": _training,
        "time_to_quality": lambda s: _ttq(s, png_name),
        "sampling": _sampling,
        "checkpoints": _checkpoints,
        "compile": _compile,
    }
    for name, write in writers.items():
        if name in sections:
            lines += [*write(sections[name]), ""]
        elif name in results["errors"]:
            lines += [f"## {name}", "", f"FAILED: {results['errors'][name]}", ""]
    lines += _memory(results)
    return "\n".join(lines) + "\n"


def write_results(results: dict[str, Any], out_dir: Path) -> Path:
    """Write the JSON, the Markdown and (when there is a curve) the PNG; returns the JSON path."""
    machine = results["machine"]
    png = out_dir / f"{machine}-quality.png"
    curve = results["sections"].get("time_to_quality", {}).get("curve")
    if curve:
        plot_quality(curve, png, f"{machine}: generation metrics of the in-training evaluation")
    path = out_dir / f"{machine}.json"
    atomic_write_text(path, json.dumps(json_safe(results), indent=1) + "\n")
    atomic_write_text(out_dir / f"{machine}.md", markdown(results, png.name))
    return path
