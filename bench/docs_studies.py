"""Sections of docs/benchmarks.md on studies: time to best, trial costs, pruning, CPU modes
and parallel trials (see ``bench.docs``)."""

from __future__ import annotations

import statistics
from typing import Any

from bench.trial_costs import fixed_by_kind


def _seconds(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.0f}"


def _times(value: float | None, below: float | None = None) -> str:
    if value is None:
        return "-" if below is None else f"< {below:.2f}x"
    return f"{value:.2f}x"


def time_to_best(result: dict[str, Any]) -> list[str]:
    lines = [
        "## Time to best against the tutorial",
        "",
        "A notebook-style search (decode + augment every sample, default DataLoader, one MLflow "
        "`log_metric` per epoch, no cache, no pruning, fp32) against `studies run` with its defaults "
        "from a cold start (empty image and execution caches), on the same data, folds and search "
        f"space, both with the same TPE seed, for each sampler seed ({result['mode']}). Seconds "
        "until each first finished a trial at least as good as the baseline's final best CV "
        "accuracy; the figure is the median over seeds. A seed whose studies run did not reach it "
        "within the baseline's whole search time gives a bound, `< x`: baseline seconds ÷ the "
        f"seconds it searched. {_workers(result)}",
        "",
        "| data | median speedup | min (seeds that reached it) | max | per seed |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for case in result["cases"]:
        below = case.get("speedups_below", {})
        per_seed = ", ".join(
            f"{seed}: {_times(v, below.get(seed))}" for seed, v in case["speedups"].items()
        )
        median = case["speedup"]
        median_text = f"< {median:.2f}x" if case.get("speedup_is_bound") else _times(median)
        lines.append(
            f"| {case['data']} | {median_text} | {_times(case['speedup_min'])} | "
            f"{_times(case['speedup_max'])} | {per_seed} |"
        )
    lines += [
        "",
        "| data | seed | baseline best | baseline s | studies s | studies trials (pruned) | "
        "trials per minute: studies / baseline | speedup |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case in result["cases"]:
        for run in case["seeds"]:
            ours, base = run["studies"], run["baseline"]
            lines.append(
                f"| {case['data']} | {run['seed']} | {run['target_value']:.4f} | "
                f"{_seconds(base['seconds_to_target'])} | {_seconds(ours['seconds_to_target'])} | "
                f"{ours['trials']} ({ours.get('PRUNED', 0)}) | {_trial_rates(run)} | "
                f"{_times(run['speedup'], run.get('speedup_below'))} |"
            )
    lines += ["", f"- Target: >= {result['target_speedup']:.0f}x faster (median)."]
    lines += _closest(result)
    return [*lines, *_step_foresight(result), *_trial_costs(result)]


def _closest(result: dict[str, Any]) -> list[str]:
    """How near the studies' best came on the seeds that never reached the baseline's best."""
    near = [
        f"{case['data']} seed {run['seed']}: {max(values):.4f} against {run['target_value']:.4f}"
        for case in result["cases"]
        for run in case["seeds"]
        if run["studies"]["seconds_to_target"] is None
        and (values := [v for _, v in run["studies"]["finished"]])
    ]
    return [f"- Best CV of the studies that never reached it: {'; '.join(near)}."] if near else []


def _step_foresight(result: dict[str, Any]) -> list[str]:
    """How well each pruning step's report foretold a complete trial's CV accuracy."""
    cases = [case for case in result["cases"] if "tried" in case["seeds"][0]["studies"]]
    if not cases:
        return []
    lines = [
        "",
        "How well each pruning report foretold the CV accuracy of the trials that completed "
        "(all seeds; steps 0-3 are quarters of the first fold, 3 + f the mean of folds 0..f; the "
        "last fold's step, the CV accuracy itself, is left out): "
        "Pearson r, and where the best fifth of those trials ranked among them at that step "
        "(0: lowest, 1: highest; a median pruner stops what ranks below 0.5).",
        "",
        "| data | step | complete trials | r | best fifth's ranks |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for case in cases:
        tried = [t for run in case["seeds"] for t in run["studies"]["tried"]]
        complete = [t for t in tried if t["state"] == "COMPLETE"]
        for step in sorted({int(k) for t in complete for k in t["reports"]}):
            pairs = [
                (t["reports"][str(step)], t["value"]) for t in complete if str(step) in t["reports"]
            ]
            early, final = [a for a, _ in pairs], [b for _, b in pairs]
            if len(pairs) < 3 or early == final or len(set(early)) < 2 or len(set(final)) < 2:
                continue  # the CV step itself, or constant values: no correlation to show
            cut = sorted(final)[int(0.8 * len(final))]
            ranks = sorted(sum(e < a for e in early) / len(early) for a, b in pairs if b >= cut)
            lines.append(
                f"| {case['data']} | {step} | {len(pairs)} | "
                f"{statistics.correlation(early, final):.3f} | "
                f"{', '.join(f'{r:.2f}' for r in ranks)} |"
            )
    return [*lines, ""]


def _trial_rates(run: dict[str, Any]) -> str:
    """Trials ended (complete or pruned) per minute of search, studies run / the baseline."""
    ours, finished = run["studies"], run["baseline"]["finished"]
    if "searched_seconds" not in ours or not finished:
        return "-"
    studies = 60 * ours["trials"] / ours["searched_seconds"]
    return f"{studies:.1f} / {60 * len(finished) / max(t for t, _ in finished):.1f}"


def _workers(result: dict[str, Any]) -> str:
    if "workers" not in result:
        return f"Torch threads: {result.get('torch_threads', '-')}."
    return (
        f"`studies run` workers: {result['workers']} (its default, `auto`), "
        f"{result['threads_per_worker']} torch thread(s) each; the trial costs below are those "
        "of the trials the `studies run` process ran itself."
    )


def _fixed_kinds(result: dict[str, Any]) -> str:
    records = [r for case in result["cases"] for r in case["trial_records"]]
    kinds = fixed_by_kind(records)
    return "; ".join(
        f"{kind} trials median {k['median']:.2f} s over {k['n']}" if k["n"] else f"no {kind} trials"
        for kind, k in kinds.items()
    ) + (
        " (warm-up: the first trial of its study in the process, or one that decoded images or "
        "timed the execution modes for a new backbone and size)"
    )


def _trial_costs(result: dict[str, Any]) -> list[str]:
    fixed, start = result["fixed_seconds_per_trial"], result["process_start_seconds"]
    lines = [
        f"- Fixed cost per `studies run` trial (its wall time less its training epochs; decodes "
        f"count as cache warm-up): median {fixed['median']:.2f} s, min {fixed['min']:.2f}, max "
        f"{fixed['max']:.2f} over {fixed['n']} trials (target <= {result['target_fixed_seconds']} s).",
        f"- The same split by kind: {_fixed_kinds(result)}.",
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
        f"Training images/s (the trainer's timed training step: random input, channels-last, fp32) "
        f"of one process using all "
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
