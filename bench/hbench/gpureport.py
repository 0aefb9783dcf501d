"""The Markdown page of one bench/gpu_check.py run (`gpu_<name>.md`), rewritten after every part."""

from __future__ import annotations

from typing import Any


def _num(value: Any, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def header(r: dict[str, Any]) -> list[str]:
    host = r.get("host", {})
    lines = [
        f"# gpu_check {r['name']}: {r['device']}",
        "",
        f"{r['date']}; commit {host.get('git_commit')}{' (uncommitted changes)' if host.get('git_dirty') else ''}, "
        f"torch {host.get('torch_version')} (CUDA {host.get('cuda_version', 'n/a')}), {host.get('cpu_cores')} CPU "
        f"cores. Parts in order: {', '.join(r['parts'])}; time budget {r['budget_s']:.0f} s, "
        f"{r.get('elapsed_s', 0):.0f} s used. Command: `{r['command']}`.",
        "",
    ]
    if r["cpu_plumbing"]:
        lines += ["**CPU plumbing run (smoke preset, tiny sizes): every number below is meaningless.**", ""]
    lines += [f"- {part}: {why}" for part, why in r["skipped"].items()]
    return lines + ([""] if r["skipped"] else [])


def steps_section(r: dict[str, Any]) -> list[str]:
    s = r["sizes"]
    lines = [
        "## Training step, per preset and precision",
        "",
        f"The trainer's step (`Optimization.step`, and the EMA update after a denoiser step); {s['warmup']} warm-up "
        f"steps, then {s['repeats']} blocks of {s['steps']} steps, each between two `torch.cuda.synchronize()`: "
        "median steps/s over the blocks (range). fp32 allows TF32 matmuls. Host syncs: synchronizing operations "
        "CUDA's sync debug mode reported in one more step.",
        "",
        "| preset | precision | stage | steps/s | range | ms/step | loss first -> last | skipped | host syncs | "
        "CUDA max MiB | ok |",
        "|---|---|---|---:|---|---:|---|---:|---:|---:|---|",
    ]
    for row in r["rows"]:
        for stage, m in row["stages"].items():
            syncs = m["host_syncs_per_step"]["count"]
            lines.append(
                f"| {row['preset']} | {row['precision']} | {stage} | {m['steps_per_s']:.1f} | "
                f"{m['steps_per_s_min']:.1f}-{m['steps_per_s_max']:.1f} | {m['ms_per_step']:.2f} | "
                f"{m['loss_first']:.4f} -> {m['loss_last']:.4f} | {m['skipped_steps']} | "
                f"{'n/a' if syncs is None else syncs} | {_num(m['cuda_max_allocated_mib'], 0)} | {m['ok']} |"
            )
    lines += ["", f"Fastest precision per preset and stage: {r['fastest']}."]
    lines += [f"- {s}" for s in r["skipped"]]
    return lines + [""]


def train_section(r: dict[str, Any]) -> list[str]:
    lines = ["## Training the default model end to end", "", f"`{r['command']}`, use_amp={r['use_amp']!r}.", ""]
    lines += [
        f"- wall time {r['wall_s']:.1f} s{' (' + r['cut_short'] + ')' if r['cut_short'] else ''}; first output line "
        f"after {_num(r['first_line_s'])} s; after the last epoch line (final outputs) "
        f"{_num(r['after_last_epoch_s'])} s"
    ]
    for stage, s in r["stages"].items():
        lines.append(
            f"- {stage}: {s['epochs']} epochs logged, epoch lines from {s['first_epoch_line_s']:.1f} s to "
            f"{s['last_epoch_line_s']:.1f} s, {_num(s['s_per_epoch'], 2)} s per epoch"
        )
    lines.append(
        f"- model_final.pt {_num(r['model_final_mib'], 2)} MiB, h_molqd_outputs.zip {_num(r['outputs_zip_mib'])} MiB"
    )
    return lines + [""]


def generate_section(r: dict[str, Any]) -> list[str]:
    lines = [
        "## Generation speed",
        "",
        f"`hmolqd.generate(model, n)` with its defaults on {r['device']} after a warm-up, the device synchronized "
        "around each call; median (range) of the calls.",
        "",
        "| n | rooms/s | range | calls | CUDA max MiB |",
        "|---:|---:|---|---:|---:|",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {row['n']:,} | {row['rooms_per_s']:,.0f} | {row['rooms_per_s_min']:,.0f}-{row['rooms_per_s_max']:,.0f} "
            f"| {row['calls']} | {_num(row['cuda_max_allocated_mib'], 0)} |"
        )
    return lines + [f"- {s}" for s in r["skipped"]] + [""]


def illuminate_section(r: dict[str, Any]) -> list[str]:
    done = f"{r['evaluations_done']:,} of {r['evaluations_asked']:,} evaluations in {r['wall_s']:.1f} s"
    return [
        "## Illuminate",
        "",
        f"`{r['command']}`: {done}" + (f" ({r['cut_short']})" if r["cut_short"] else "") + "; "
        f"{_num(r['evaluations_per_s'], 2)} evaluations/s ({_num(r['evaluations_per_s_after_first_batch'], 2)} after "
        f"the first batch), first batch after {_num(r['first_batch_s'])} s.",
        "",
        *(f"    {line}" for line in r["last_lines"]),
        "",
    ]


def resume_section(r: dict[str, Any]) -> list[str]:
    lines = ["## SIGKILL and resume", ""]
    for amp, k in r["runs"].items():
        if k.get("skipped"):
            lines.append(f"- use_amp={amp!r}: {k['skipped']}")
            continue
        lines.append(
            f"- use_amp={amp!r}: {'PASS' if k['ok'] else 'FAIL'}: killed with files {k['files_when_killed']}; resumed "
            f"vs uninterrupted max |diff| {k['max_abs_diff']:.3g} over {k['tensors_compared']} tensors, run-to-run "
            f"noise {k['run_to_run_noise']:.3g} (tolerance 10x: {k['tolerance']:.3g}); GradScaler steps skipped: "
            f"{k['skipped_steps']}."
        )
    return lines + [""] + ([f"Skipped: {r['skipped']}.", ""] if r["skipped"] else [])


SECTIONS = {
    "env": lambda r: ["## Environment", "", "```", r["report"], "```", ""],
    "steps": steps_section,
    "train": train_section,
    "generate": generate_section,
    "illuminate": illuminate_section,
    "resume": resume_section,
    "suite": lambda r: ["## Suite", "", f"See [{r['markdown']}]({r['markdown']}).", ""],
}


def markdown(results: dict[str, Any]) -> str:
    lines = header(results)
    for part in results["parts"]:
        if part in results["errors"]:
            lines += [f"## {part}: FAILED", "", "```", results["errors"][part][-1500:], "```", ""]
        elif part in results["results"]:
            lines += SECTIONS[part](results["results"][part])
    return "\n".join(lines) + "\n"
