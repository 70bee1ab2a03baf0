"""Sections of docs/benchmarks.md on feeding the model: input pipeline, decode cost, GPU
(see ``bench.docs``)."""

from __future__ import annotations

from typing import Any


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
