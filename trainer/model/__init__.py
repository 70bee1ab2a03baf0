"""The model stage: a timm backbone with its data config, its optimiser and schedule, and the
checkpoints of its weights."""
