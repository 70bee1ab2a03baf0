"""One typed configuration for a fit, loaded from YAML with ``--set key=value`` overrides.

Every field carries a comment: this file is the reference for the YAML keys. Unknown keys and
bad values are rejected with one line naming the key and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from trainer.errors import UserError, one_line


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """Where the images are and how they are split."""

    root: Path  # a folder with one subfolder per class, or a CSV with path,label columns
    test_size: float = Field(0.1, gt=0, lt=1)  # stratified holdout fraction, fixed once per dataset
    folds: int = Field(5, ge=1)  # StratifiedKFold splits; 1 = one stratified train/val split
    val_size: float = Field(0.2, gt=0, lt=1)  # validation fraction when folds == 1
    split_dir: Path | None = None  # where split files are kept; default <output.dir>/splits
    # Disk budget of the decoded-image cache shared by all processes, in $TIMM_STUDIES_CACHE or
    # ~/.cache/timm-studies/images; least recently used entries go beyond it (0 = decode always).
    cache_mb: int = Field(20480, ge=0)
    num_workers: int | Literal["auto"] = "auto"  # DataLoader worker processes
    on_bad_image: Literal["skip", "error"] = "skip"  # unreadable images: drop and warn, or stop


class ModelConfig(_Section):
    """Which timm backbone, with which starting weights."""

    backbone: str = "resnet18"  # any name from timm.list_models()
    pretrained: bool = True  # download the backbone's pretrained weights from the hub
    weights: Path | None = None  # local .safetensors / weights-only .pth instead of the hub
    freeze_backbone: bool = False  # train only the classifier head
    drop_rate: float = Field(0.0, ge=0, lt=1)  # dropout before the classifier


class AugmentConfig(_Section):
    """Training-set augmentation (probability 0 turns a transform off)."""

    rotate_limit: float = Field(15.0, ge=0, le=180)  # maximum rotation in degrees
    rotate_p: float = Field(0.5, ge=0, le=1)  # probability of a rotation
    hflip_p: float = Field(0.5, ge=0, le=1)  # probability of a horizontal flip
    coarse_dropout_p: float = Field(0.5, ge=0, le=1)  # probability of cutting out patches


class TrainConfig(_Section):
    """Optimisation: what the engine does per fold."""

    image_size: int = Field(224, ge=8)  # square side images are resized to
    batch_size: int = Field(32, ge=1)  # training batch size (clamped to the training set)
    epochs: int = Field(5, ge=1)  # epochs per fold; also the cosine schedule's length
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"  # sgd uses momentum
    lr: float = Field(3e-4, gt=0)  # peak learning rate
    weight_decay: float = Field(0.0, ge=0)  # L2 (adam, sgd) or decoupled (adamw) decay
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd only
    min_lr: float = Field(0.0, ge=0)  # floor of the cosine schedule
    warmup_epochs: float = Field(0.0, ge=0)  # linear warmup length, in epochs (fractions allowed)
    label_smoothing: float = Field(0.0, ge=0, lt=1)  # cross-entropy label smoothing
    early_stopping_patience: int | None = Field(None, ge=1)  # epochs without val gain; None = off
    refit: bool = False  # after CV, train on all non-test data and evaluate on the holdout
    refit_epochs: int | None = Field(
        None, ge=1
    )  # None = epochs, or mean best epoch with early stop

    @model_validator(mode="after")
    def _floor_below_peak(self) -> TrainConfig:
        if self.min_lr >= self.lr:
            raise ValueError(f"train.min_lr ({self.min_lr}) must be below train.lr ({self.lr})")
        return self


class RuntimeConfig(_Section):
    """Where and how the arithmetic runs."""

    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"  # auto: CUDA, then MPS, then CPU
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto measures on CPU, AMP on GPU
    channels_last: bool | Literal["auto"] = "auto"  # memory format; auto times both, any device
    deterministic: bool = True  # deterministic kernels where torch has them
    cudnn_benchmark: bool | Literal["auto"] = "auto"  # cuDNN autotune; auto: if not deterministic
    progress: bool = True  # progress bar on a terminal (plain lines otherwise)


class OutputConfig(_Section):
    """Where checkpoints, splits and summaries are written."""

    dir: Path = Path("outputs")  # runs go to <dir>/<experiment>/<run name>/


class TrackingConfig(_Section):
    """What goes to MLflow (``tracking: false`` turns it off)."""

    enabled: bool = True  # log runs to MLflow; false for quick local runs
    uri: str | None = None  # tracking URI; MLFLOW_TRACKING_URI wins; default sqlite in mlruns/
    log_checkpoints: Literal["best", "all", "none"] = "best"  # per fold: best epoch, every epoch
    log_model: bool = True  # log the refit (else best fold's) model as an MLflow pyfunc model
    serve_paths: bool = False  # the logged model reads file paths in requests (else base64 only)
    metrics_seconds: float = Field(10.0, ge=0.0)  # write a fold's epoch metrics at most this
    # often (0: after every epoch); the rest go in one write with the fold's results
    plots: bool = True  # learning curves, confusion matrices, galleries (offline HTML + PNG)
    system_metrics: bool = True  # CPU, memory, GPU curves of each training run (MLflow's tab)
    system_metrics_seconds: float = Field(10.0, ge=0.1)  # sampling interval of those curves


class Config(_Section):
    """Everything one ``trainer fit`` needs."""

    experiment: str = Field("default", min_length=1)  # groups runs (MLflow experiment name)
    seed: int = Field(42, ge=0, lt=2**32)  # seeds splits, init, shuffling and augmentation
    data: DataConfig
    model: ModelConfig = ModelConfig()
    augment: AugmentConfig = AugmentConfig()
    train: TrainConfig = TrainConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    output: OutputConfig = OutputConfig()
    tracking: TrackingConfig = TrackingConfig()

    @field_validator("tracking", mode="before")
    @classmethod
    def _tracking_switch(cls, value: Any) -> Any:
        return {"enabled": value} if isinstance(value, bool) else value

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain YAML/JSON-safe values."""
        return self.model_dump(mode="json")


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config, apply ``key.sub=value`` overrides, validate and resolve paths."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {one_line(exc)}") from exc
    if not isinstance(raw, dict):
        raise UserError(
            f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}"
        )
    return config_from_dict(apply_overrides(raw, overrides or []), source=str(path))


def config_from_dict(raw: dict[str, Any], source: str = "config") -> Config:
    """Validate a plain dict as a Config; errors become one line naming the key."""
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{source}: {_describe(exc)}") from exc
    # Absolute paths, so that the saved config means the same from any working directory.
    config.data.root = config.data.root.expanduser().resolve()
    config.output.dir = config.output.dir.expanduser().resolve()
    if config.data.split_dir is not None:
        config.data.split_dir = config.data.split_dir.expanduser().resolve()
    if config.model.weights is not None:
        config.model.weights = config.model.weights.expanduser().resolve()
    return config


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``a.b.c=value`` set (values parsed as YAML)."""
    result = yaml.safe_load(yaml.safe_dump(raw))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.lr=3e-4")
        try:
            set_dotted(result, key, yaml.safe_load(text) if text else None)
        except ValueError as exc:
            raise UserError(f"--set {item!r}: {exc}") from None
    return result


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set ``raw[a][b][c] = value`` for the dotted key ``a.b.c``, creating missing sections.

    Raises ``ValueError`` when a part of the key names a value rather than a section.
    """
    node = raw
    *parents, leaf = key.split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"{part!r} is a value, not a section")
        node = child
    node[leaf] = value


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested sections to dotted keys: ``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def save_config(config: Config, path: Path) -> None:
    """Write the resolved configuration as YAML."""
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def _describe(exc: ValidationError) -> str:
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"]) or "config"
    if error["type"] == "extra_forbidden":
        return f"unknown key '{key}' (allowed here: {_allowed_keys(error['loc'])})"
    if error["type"] == "missing":
        return f"missing required key '{key}'"
    message = error["msg"].removeprefix("Value error, ")
    return f"bad value for '{key}': {message} (got {error.get('input')!r})"


def _allowed_keys(loc: tuple[int | str, ...]) -> str:
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        annotation = model.model_fields[str(part)].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    return ", ".join(model.model_fields)
