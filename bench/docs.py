"""Rewrite docs/benchmarks.md from bench/results/*.json (never edited by hand)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import RESULTS

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
            "on 2 cores they compete with training."
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
        f"- Time in the tracker ÷ the rest of the same fit: {case['hook_overhead']:+.1%} "
        f"(spread {low:+.1%} to {high:+.1%}).",
        f"- Where it goes (medians per fit): {per_hook}.",
        *background,
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


def _seconds(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.0f}"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def time_to_best(result: dict[str, Any]) -> list[str]:
    lines = [
        "## Time to best against the tutorial",
        "",
        "A notebook-style search (decode + augment every sample, default DataLoader, one MLflow "
        "`log_metric` per epoch, no cache, no pruning, fp32) against `studies run` with its defaults "
        "from a cold start (empty image and execution caches), on the same data, folds and search "
        f"space, both with the same TPE seed, for each sampler seed ({result['mode']}). Seconds "
        "until each first finished a trial at least as good as the baseline's final best CV "
        "accuracy; the figure is the median over seeds (a seed whose studies run never reached "
        f"it ranks lowest). Torch threads: {result.get('torch_threads', '-')}.",
        "",
        "| data | median speedup | min | max | per seed |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for case in result["cases"]:
        per_seed = ", ".join(f"{seed}: {_times(v)}" for seed, v in case["speedups"].items())
        lines.append(
            f"| {case['data']} | {_times(case['speedup'])} | {_times(case['speedup_min'])} | "
            f"{_times(case['speedup_max'])} | {per_seed} |"
        )
    lines += [
        "",
        "| data | seed | baseline best | baseline s | studies s | studies trials (pruned) | speedup |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case in result["cases"]:
        for run in case["seeds"]:
            ours, base = run["studies"], run["baseline"]
            lines.append(
                f"| {case['data']} | {run['seed']} | {run['target_value']:.4f} | "
                f"{_seconds(base['seconds_to_target'])} | {_seconds(ours['seconds_to_target'])} | "
                f"{ours['trials']} ({ours.get('PRUNED', 0)}) | {_times(run['speedup'])} |"
            )
    lines += ["", f"- Target: >= {result['target_speedup']:.0f}x faster (median)."]
    return [*lines, *_trial_costs(result)]


def _trial_costs(result: dict[str, Any]) -> list[str]:
    fixed, start = result["fixed_seconds_per_trial"], result["process_start_seconds"]
    lines = [
        f"- Fixed cost per `studies run` trial (its wall time less its training epochs; decodes "
        f"count as cache warm-up): median {fixed['median']:.2f} s, min {fixed['min']:.2f}, max "
        f"{fixed['max']:.2f} over {fixed['n']} trials (target <= {result['target_fixed_seconds']} s).",
        f"- Process start (a fresh Python importing a worker's modules): median "
        f"{start['median']:.2f} s, paid once per `studies run` worker.",
        "",
        "Where a trial's seconds go besides training: median seconds per trial (most trials "
        "are pruned, so a cost paid only by complete trials or only once per search has a median "
        "of 0) and the total over all trials; timers wrapped around the library's functions by "
        "the bench.",
        "",
        "| component | "
        + " | ".join(f"{c['data']}: median | total" for c in result["cases"])
        + " |",
        "| --- | " + " | ".join("---: | ---:" for _ in result["cases"]) + " |",
    ]
    costs = [case["trial_costs"] for case in result["cases"]]
    lines += [
        "| **fixed cost** | "
        + " | ".join(
            f"{c['fixed_seconds']['median']:.3f} | {sum(r['fixed'] for r in case['trial_records']):.1f}"
            for case, c in zip(result["cases"], costs, strict=True)
        )
        + " |"
    ]
    components = sorted({k for c in costs for k in c["component_median_seconds"]} - {"decode"})
    lines += [
        f"| {'training epochs (gross, with decodes)' if name == 'epochs' else name} | "
        + " | ".join(
            f"{c['component_median_seconds'].get(name, 0.0):.3f} | "
            f"{c['component_total_seconds'].get(name, 0.0):.1f}"
            for c in costs
        )
        + " |"
        for name in ["epochs", "decode", *(n for n in components if n != "epochs")]
    ]
    caches = "; ".join(
        f"{case['data']}: {c['cache']['hits']:,} hits, {c['cache']['decodes']:,} decodes in "
        f"{c['cache']['trials_that_decoded']} of {c['trials']} trials, "
        f"{c['cache']['trials_redecoding_a_seen_size']} re-decoding a size seen before"
        for case, c in zip(result["cases"], costs, strict=True)
    )
    lines += ["", f"- Decoded-image cache: {caches}."]
    for case, c in zip(result["cases"], costs, strict=True):
        calls = c.get("call_median_seconds_and_calls", {})
        inside = ", ".join(
            f"{name} {seconds:.3f} s ({count:g} calls)"
            for name, (seconds, count) in sorted(calls.items(), key=lambda kv: -kv[1][0])
            if seconds >= 0.005
        )
        if inside:
            lines.append(f"- Calls inside those, {case['data']} (median per trial): {inside}.")
    return lines


def cpu_modes(result: dict[str, Any]) -> list[str]:
    modes = list(result["cases"][0]["modes"])
    lines = [
        "## CPU execution mode",
        "",
        f"Training images/s per mode (batch {result['batch']}, median of repeats) and the mode "
        "`precision: auto` picked with its own short measurement.",
        "",
        "| backbone | px | " + " | ".join(modes) + " | auto | fastest |",
        "| --- | ---: | " + " | ".join("---:" for _ in modes) + " | --- | --- |",
    ]
    for case in result["cases"]:
        speeds = " | ".join(f"{case['modes'][m]['images_per_second']:.0f}" for m in modes)
        lines.append(
            f"| {case['backbone']} | {case['image_size']} | {speeds} | {case['auto']} | {case['fastest']} |"
        )
    lines += [
        "",
        f"- auto picked the fastest measured mode in {result['auto_fastest_share']:.0%} of cases, "
        f"and a mode within the fastest one's spread in "
        f"{result.get('auto_within_noise_share', float('nan')):.0%}.",
    ]
    return lines


def parallel_trials(result: dict[str, Any]) -> list[str]:
    cores = result["cores"]
    lines = [
        "## Parallel trials on CPU",
        "",
        f"Training images/s (random input, Adam, channels-last, fp32) of one process using all "
        f"{cores} cores against {cores} one-thread processes at the same time, as "
        f"`studies run --workers auto` runs trials on a machine without GPU (median of "
        f"{result['repeats']} rounds of {result['seconds_per_round']:.0f} s).",
        "",
        f"| backbone | px | batch | 1 x {cores} threads img/s | {cores} x 1 thread img/s | ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case in result["cases"]:
        lines.append(
            f"| {case['backbone']} | {case['image_size']} | {case['batch']} | "
            f"{case['one_process_images_per_second']:.0f} | "
            f"{case['parallel_images_per_second']:.0f} | {case['ratio']:.2f} |"
        )
    return lines


def input_pipeline(result: dict[str, Any]) -> list[str]:
    lines = [
        "## Input pipeline efficiency",
        "",
        "Training images/s over 500x375 JPEG files (trainer: warm decoded-image cache, its DataLoader "
        "settings; tutorial: decode + augment every sample, default DataLoader) divided by the same "
        "model on in-memory tensors (fp32, batch as shown).",
        "",
        "| backbone | px | images | trainer img/s | model-only img/s | tutorial img/s | trainer ÷ model | tutorial ÷ model |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in result["cases"]:
        lines.append(
            f"| {c['backbone']} | {c['image_size']} | {c['images']} | {c['trainer_images_per_second']:.0f} | "
            f"{c['model_only_images_per_second']:.0f} | {c['tutorial_images_per_second']:.0f} | "
            f"{c['efficiency']:.2f} | {c['tutorial_efficiency']:.2f} |"
        )
    lines += ["", f"- Target: trainer ÷ model >= {result['target_efficiency']:.2f}."]
    return lines


def pruning_economy(result: dict[str, Any]) -> list[str]:
    def settings(pruner: dict[str, Any]) -> str:
        return ", ".join(f"{k} {v}" for k, v in pruner.items() if k != "type") or "defaults"

    default = result["default_pruner"]
    grids = {4: "quarters", 10: "tenths"}
    lines = [
        "## Pruning economy",
        "",
        "Each study run without pruning and with each pruner, in one run (same sampler seed, search "
        f"space and trial count). The default (`{default['type']}`, {settings(default)}) is the demo "
        "study file's pruner section. Grid: the first fold reports at quarters (the scheme's) or "
        "tenths (before) of its schedule. Target: epochs <= "
        f"{result['target_epochs_ratio']} of the study without pruning, best CV accuracy no more "
        f"than {result['target_points']} points below it.",
    ]
    for case in result["cases"]:
        wo = case["without"]
        lines += [
            "",
            f"**{case['study']}**: {case['data']}, {case['trials']} trials; without pruning "
            f"{wo['epochs']:.0f} epochs, {wo['seconds']:.0f} s, best {wo['best_value']:.4f}.",
            "",
            "| pruner | type, settings | grid | pruned | epochs | epochs ratio | seconds ratio | best CV | points | meets target |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for row in case["with"]:
            lines.append(
                f"| {row['label']} | `{row['pruner']['type']}`, {settings(row['pruner'])} | "
                f"{grids.get(row['grid'], row['grid'])} | {row['pruned']}/{row['trials']} | {row['epochs']:.0f} | {row['epochs_ratio']:.2f} | "
                f"{row['seconds_ratio']:.2f} | {row['best_value']:.4f} | "
                f"{row['best_value_difference_points']:+.2f} | {'yes' if row['meets_target'] else 'no'} |"
            )
    return lines


def decode_cost(result: dict[str, Any]) -> list[str]:
    lines = [
        "## Cost of the EXIF-aware decode",
        "",
        "Decode + resize images/s in one process, the two decoders taking turns "
        f"(median of {result['rounds']} rounds). Before: full decodes with `IMREAD_UNCHANGED` "
        "(EXIF orientation ignored); after: `read_rgb` (orientation applied on every path).",
        "",
        "| case | images | before img/s | after img/s | after ÷ before |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for c in result["cases"]:
        lines.append(
            f"| {c['case']} | {c['images']} | {c['before_images_per_second']:.0f} | "
            f"{c['after_images_per_second']:.0f} | {c['ratio']:.2f} |"
        )
    return lines


def gpu_pipeline(result: dict[str, Any]) -> list[str]:
    first, busy = result["first_epoch"], result["study_busy"]
    lines = [
        f"## GPU feeding ({result['gpu']})",
        "",
        "Training images/s through the trainer's data path (500x375 JPEGs, disk cache, uint8 "
        "batches normalised on the device) ÷ the same model on normalised tensors already on the "
        "GPU (targets: >= 0.90 at batch 128, >= 0.95 at batch 32).",
        "",
        "| backbone | batch | px | execution | trainer img/s | model-only img/s | ratio | "
        "data path alone img/s |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for c in result["cases"]:
        alone = c.get("loader_only_images_per_second")
        lines.append(
            f"| {c['backbone']} | {c['batch']} | {c['image_size']} | {c['execution']} | "
            f"{c['trainer_images_per_second']:.0f} | {c['model_only_images_per_second']:.0f} | "
            f"{c['ratio']:.2f} | " + ("-" if alone is None else f"{alone:.0f}") + " |"
        )
    if scaling := result.get("worker_scaling"):
        rates = ", ".join(f"{r['workers']}: {r['images_per_second']:.0f}" for r in scaling)
        lines += ["", f"- The data path alone (no model), img/s by loader workers: {rates}."]
    if steps := result.get("serial_steps"):
        parts = ", ".join(
            ("pinned" if r["pinned"] else "not pinned")
            + (" + copied to the GPU" if r["copied"] else "")
            + f" {r['images_per_second']:.0f}"
            for r in steps
        )
        lines += [f"- Its serial steps, img/s with the default workers: received only, {parts}."]
    share, tune = busy["busy_fraction"], result.get("autotune")
    if tune:
        lines += [
            "",
            f"- Model-only {tune['backbone']} at batch {tune['batch']}: deterministic kernels "
            f"(the default) {tune['images_per_second']['deterministic']:.0f} img/s, cuDNN "
            f"autotuning {tune['images_per_second']['autotuned']:.0f} img/s "
            f"(ratio {tune['deterministic_over_autotuned']:.2f}).",
        ]
    return [
        *lines,
        "",
        f"- First epoch ÷ a later one, {first['backbone']} at {first['image_size']} px: "
        f"{first['first_over_later']:.2f} (target <= 2).",
        f"- GPU busy during a study ({busy['study']}): "
        + ("not measured (no nvidia-smi)" if share is None else f"{share:.0%} (target >= 70%)"),
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
