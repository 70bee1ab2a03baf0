"""Rewrite docs/benchmarks.md from bench/results/*.json (never edited by hand)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import RESULTS
from bench.docs_feeding import decode_cost, gpu_pipeline, input_pipeline
from bench.docs_studies import (
    cpu_modes,
    parallel_trials,
    pruning_economy,
    time_to_best,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def report_scaling(result: dict[str, Any]) -> list[str]:
    lines = [
        "## Report scaling",
        "",
        "`studies report` on synthetic stores (5 folds x 10 epochs per trial); median of repeats.",
        "",
        "| runs | trials | seconds (median) | min | max |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for size in result["sizes"]:
        s = size["seconds"]
        lines.append(
            f"| {size['runs']} | {size['trials']} | {s['median']:.2f} | {s['min']:.2f} | {s['max']:.2f} |"
        )
    lines += [
        "",
        f"- At ~1000 runs: {result['seconds_at_1000_runs']:.2f} s (target <= {result['target_seconds_at_1000_runs']:.0f} s).",
    ]
    if result.get("scaling_vs_linear") is not None:
        lines.append(
            f"- Growth from ~1000 to the largest store, relative to linear: {result['scaling_vs_linear']:.2f} (1.0 = linear)."
        )
    return lines


def tracking_overhead(result: dict[str, Any]) -> list[str]:
    lines = [
        "## Tracking overhead",
        "",
        "Each fit with full MLflow tracking (params, epoch metrics, checkpoints, figures, galleries, "
        "the logged model) and without, alternating in one warmed-up process. Uploads and figures "
        "run on the tracker's background writer; the time the training thread spends inside the "
        "tracker's hooks (`fit_end` includes waiting for the writer) is measured within each "
        "tracked fit.",
    ]
    for case in result["cases"]:
        lines += _tracking_case(case)
    return lines


def _tracking_case(case: dict[str, Any]) -> list[str]:
    on, off, hooks = case["on"], case["off"], case["hooks"]
    writer = case["hook_seconds"].get("writer_thread_cpu")
    per_hook = ", ".join(
        f"{name.removeprefix('on_')} {seconds:.2f} s"
        for name, seconds in case["hook_seconds"].items()
        if seconds and name != "writer_thread_cpu"
    )
    low, high = case["hook_overhead_spread"]
    when = f" Measured {case['measured']}." if case.get("measured") else ""
    background = (
        []
        if writer is None
        else [
            f"- CPU seconds of the background writer per tracked fit (median): {writer:.2f} s; "
            "on 2 cores they compete with training. Were each of them taken from training, the "
            f"overhead would be {(hooks['median'] + writer) / (on['median'] - hooks['median']):.1%}"
            " (time in the tracker plus writer CPU, ÷ the rest of the fit): a bound that does "
            "not depend on the noise between fits."
        ]
    )
    return [
        "",
        f"**{case['case']}**: {case['data']}; demo config with `{case['settings']}`; "
        f"{case['repeats']} tracked and {case['repeats']} untracked fits.{when}",
        "",
        "| | seconds (median) | min | max |",
        "| --- | ---: | ---: | ---: |",
        f"| fit, tracking on | {on['median']:.2f} | {on['min']:.2f} | {on['max']:.2f} |",
        f"| fit, tracking off | {off['median']:.2f} | {off['min']:.2f} | {off['max']:.2f} |",
        f"| inside the tracker (per tracked fit) | {hooks['median']:.2f} | {hooks['min']:.2f} | {hooks['max']:.2f} |",
        "",
        f"- Wall-time overhead, on ÷ off − 1: {case['overhead']:+.1%} (target <= {case['target_overhead']:.0%}).",
        *_paired(case),
        f"- Time in the tracker ÷ the rest of the same fit: {case['hook_overhead']:+.1%} "
        f"(spread {low:+.1%} to {high:+.1%}).",
        f"- Where it goes (medians per fit): {per_hook}.",
        *background,
    ]


def _paired(case: dict[str, Any]) -> list[str]:
    """The overhead of each back-to-back pair of fits, where the bench recorded them."""
    paired = case.get("paired_overhead")
    if paired is None:
        return []
    fits = case["fits"]
    pairs = ", ".join(
        f"{on:.1f}/{off:.1f} s" for on, off in zip(fits["on"], fits["off"], strict=True)
    )
    return [
        f"- Per back-to-back pair (on/off: {pairs}): median {paired['median']:+.1%}, spread "
        f"{paired['min']:+.1%} to {paired['max']:+.1%}; pairing cancels the machine's slow drifts."
    ]


def explore(result: dict[str, Any]) -> list[str]:
    load = result.get("load_average") or ["-", "-"]
    cores = result["machine"]["cores"]
    found = ", ".join(
        f"{name.replace('_duplicates/', ' ').replace('_', '-')} {value:.0f}"
        for name, value in result["found"].items()
    )
    return [
        "## Explore",
        "",
        "`trainer explore DATA` end to end in a new process (imports, data digest, decode check, "
        "file headers, content and perceptual hashes, splits, tables, pictures, MLflow run) over "
        f"{result['images']:,} JPEGs of {result['image_size']} in {result['classes']} classes with "
        "planted exact and near copies.",
        "",
        "| run | wall seconds | CPU seconds (all cores) |",
        "| --- | ---: | ---: |",
        f"| first (nothing kept) | {result['cold_seconds']:.1f} | {result['cold_cpu_seconds']:.1f} |",
        f"| again (findings kept per data digest) | {result['cached_seconds']:.1f} | "
        f"{result['cached_cpu_seconds']:.1f} |",
        "",
        f"- Target: first run <= {result['target_seconds']:.0f} s. Load average before / after: "
        f"{load[0]} / {load[1]} on {cores} cores (other processes); on idle cores the first run "
        f"needs at least {result['cold_cpu_seconds'] / cores:.0f} s.",
        f"- Found: {found}.",
    ]


def system_metrics(result: dict[str, Any]) -> list[str]:
    return [
        "## System metrics sampling",
        "",
        "One cycle of MLflow's system-metrics monitor (psutil CPU, memory, disk, network"
        + (", NVML GPU" if result["gpu_monitor"] else "")
        + "; the run-status check; the write to a fresh SQLite store), timed "
        f"{result['cycles']} times on the sampler's thread.",
        "",
        f"- Per sample: {result['wall_seconds_per_sample'] * 1000:.1f} ms wall, "
        f"{result['cpu_seconds_per_sample'] * 1000:.1f} ms CPU "
        f"(slowest {result['max_wall_seconds_per_sample'] * 1000:.1f} ms).",
        f"- At the default interval of {result['interval_seconds']} s the sampler takes "
        f"{result['share_of_one_core']:.2%} of one core from training.",
    ]


def command_latency(result: dict[str, Any]) -> list[str]:
    load = result.get("load_average") or ["-", "-"]
    cpu = result.get("cpu_seconds", {})
    rows = [
        f"| {name} | {wall:.2f} | {result['spread'][name][0]:.2f} | "
        f"{result['spread'][name][1]:.2f} | " + (f"{cpu[name]:.2f} |" if name in cpu else "- |")
        for name, wall in result["seconds"].items()
    ]
    helps = max(v for k, v in result["seconds"].items() if k.endswith("--help"))
    return [
        "## Command latency",
        "",
        "Each command in its own process, as typed, in turns: `trainer predict` classifies 183 "
        "digit images with a demo model registered in a fresh embedded store "
        "(`models:/latency@champion`, found without importing MLflow; `runs:/ID/model` goes "
        "through MLflow's client, as a model on a server does), against a bare "
        '`python -c "import torch, timm"`.',
        "",
        "| command | wall seconds (median) | min | max | CPU seconds |",
        "| --- | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"- Predict ÷ import torch, timm: {result['predict_over_import']:.2f} wall"
        + (
            f", {result['predict_over_import_cpu']:.2f} CPU"
            if "predict_over_import_cpu" in result
            else ""
        )
        + f" (target <= {result['targets']['predict_over_import']}); slowest --help "
        f"{helps:.2f} s (target <= {result['targets']['help_seconds']:.0f} s).",
        f"- Load average before / after: {load[0]} / {load[1]} on "
        f"{result['machine']['cores']} cores (other processes).",
    ]


SECTIONS = {
    "command_latency": command_latency,
    "gpu_pipeline": gpu_pipeline,
    "decode_cost": decode_cost,
    "pruning_economy": pruning_economy,
    "input_pipeline": input_pipeline,
    "report_scaling": report_scaling,
    "tracking_overhead": tracking_overhead,
    "system_metrics": system_metrics,
    "explore": explore,
    "cpu_modes": cpu_modes,
    "parallel_trials": parallel_trials,
    "time_to_best": time_to_best,
}


def main() -> None:
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` from `bench/results/*.json`; do not edit by hand.",
        "",
    ]
    for path in sorted(RESULTS.glob("*.json")):
        result = json.loads(path.read_text())
        machine = result["machine"]
        lines += SECTIONS[result["benchmark"]](result)
        lines += [
            "",
            f"_{machine['date']}, {machine['cpu']}, {machine['cores']} cores, device {machine['device']}, "
            f"mode {result.get('mode', '-')}; torch {machine['versions'].get('torch')}, "
            f"mlflow {machine['versions'].get('mlflow')}, optuna {machine['versions'].get('optuna')}_",
            "",
        ]
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text("\n".join(lines))
    print(f"wrote {DOCS}")


if __name__ == "__main__":
    main()
