"""``trainer`` command line: explore, fit, predict, sample-data, cache.

Errors the user can fix print one line on stderr and exit 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from trainer import interrupts
from trainer.errors import Terminated, UserError, one_line

if TYPE_CHECKING:
    from trainer.predict import Predictor

log = logging.getLogger("trainer")

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
MODEL_URI_PREFIXES = ("models:/", "runs:/", "mlflow-artifacts:/")  # else a checkpoint path


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``trainer``."""
    parser = argparse.ArgumentParser(prog="trainer", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_explore(commands)

    fit = commands.add_parser("fit", help="cross-validate (and refit) a config")
    fit.add_argument("config", type=Path, nargs="?", help="YAML config file")
    fit.add_argument(
        "--from-run", metavar="RUN_ID", help="re-run a logged run from its config and split file"
    )
    fit.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.lr=3e-4 (repeatable)",
    )
    fit.set_defaults(handler=_fit)

    _add_predict(commands)

    sample = commands.add_parser("sample-data", help="write scikit-learn's digits as PNG folders")
    sample.add_argument("out_dir", type=Path, help="folder to write class subfolders into")
    sample.add_argument("--classes", type=int, default=10, help="digits 0..N-1 (2-10)")
    sample.add_argument("--per-class", type=int, default=None, help="images per class (all)")
    sample.add_argument("--size", type=_positive, default=32, help="image side in pixels")
    sample.set_defaults(handler=_sample_data)

    cache = commands.add_parser("cache", help="list or clear the decoded-image cache")
    cache.add_argument("action", choices=("list", "clear"))
    cache.add_argument(
        "entries", nargs="*", metavar="PREFIX", help="clear only files or data digests so named"
    )
    cache.set_defaults(handler=_cache)
    return parser


def _add_explore(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    explore = commands.add_parser(
        "explore", help="look at the data: classes, splits, files, duplicates, thumbnails"
    )
    explore.add_argument(
        "target", type=Path, help="YAML config file, or a folder of class folders / a CSV"
    )
    explore.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set experiment=mine (repeatable)",
    )
    explore.add_argument(
        "--near-distance",
        type=_bits,
        default=None,
        metavar="BITS",
        help="near duplicates differ in at most BITS of 64 perceptual-hash bits (default 4)",
    )
    explore.set_defaults(handler=_explore)


def _add_predict(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    predict = commands.add_parser("predict", help="classify images with a checkpoint")
    predict.add_argument(
        "--model",
        required=True,
        help="checkpoint folder or file, or a model URI (models:/NAME@alias, runs:/ID/model)",
    )
    predict.add_argument("images", nargs="+", type=Path, help="image files or folders")
    predict.add_argument("--out", type=Path, default=Path("predictions.csv"), help="CSV to write")
    predict.add_argument("--batch-size", type=_positive, default=64)
    predict.add_argument(
        "--on-bad-image",
        choices=("skip", "error"),
        default="skip",
        help="unreadable images: skip and list them in OUT.skipped.csv, or stop",
    )
    predict.set_defaults(handler=_predict)


def _bits(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 32:
        raise argparse.ArgumentTypeError(f"must be between 0 and 32 bits, got {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trainer`` console script."""
    args = build_parser().parse_args(argv)
    return run_guarded(args.handler, args, debug=args.debug)


def run_guarded(
    handler: Callable[[argparse.Namespace], int], args: argparse.Namespace, debug: bool
) -> int:
    """Run a command: user errors as one line, interrupts as exit 130, tracebacks on --debug.

    SIGTERM raises ``Terminated`` (a KeyboardInterrupt), so that runs end KILLED, not RUNNING.
    """
    configure_logging(debug)
    interrupts.install()
    try:
        return handler(args)
    except UserError as exc:
        if debug:
            raise
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Terminated:
        print("terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if debug:
            raise
        message = one_line(str(exc))
        print(
            f"error: {type(exc).__name__}: {message} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


def configure_logging(debug: bool) -> None:
    """Log lines with a time stamp on stderr; INFO by default, DEBUG with --debug."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("PIL", "matplotlib", "urllib3", "filelock", "timm", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _fit(args: argparse.Namespace) -> int:
    from trainer.config import load_config

    if (args.config is None) == (args.from_run is None):
        raise UserError("trainer fit takes a CONFIG file or --from-run RUN_ID (one of the two)")
    reference: dict[str, str] | None = None
    if args.from_run:
        from trainer.tracking import config_from_run

        config, reference = config_from_run(args.from_run, args.overrides)
    else:
        config = load_config(args.config, args.overrides)  # fail fast, before importing torch
    callbacks = []
    if config.tracking.enabled:
        from trainer.tracking import MlflowTracker

        callbacks.append(
            MlflowTracker(config.tracking, config.experiment, reference_tags=reference)
        )

    from trainer.fit import fit

    summary = fit(config, callbacks)
    line = f"CV val acc {summary['cv/val_acc_mean']:.4f} ± {summary['cv/val_acc_std']:.4f}"
    if "refit" in summary:
        line += f"; holdout acc {summary['refit']['test/acc']:.4f}"
    log.info("%s; outputs in %s", line, summary["run_dir"])
    return 0


def _explore(args: argparse.Namespace) -> int:
    from trainer.explore.duplicates import NEAR_DISTANCE
    from trainer.explore.report import config_for, format_table, summary_rows, warning
    from trainer.explore.run import explore

    config = config_for(args.target, args.overrides)
    near = NEAR_DISTANCE if args.near_distance is None else args.near_distance
    found = explore(config, near)
    print(format_table(summary_rows(found, config.experiment)))
    line = warning(found, args.target)
    if line:
        log.warning("%s", line)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from trainer.predict import predict_to_csv

    predict_to_csv(
        _load_predictor(args.model), args.images, args.out, args.batch_size, args.on_bad_image
    )
    return 0


def _load_predictor(model: str) -> Predictor:
    """A checkpoint folder or file, or an MLflow model URI (loaded from its weights only)."""
    from trainer.model.checkpoint import find_checkpoint
    from trainer.predict import Predictor

    if model.startswith(MODEL_URI_PREFIXES):
        from trainer.tracking import load_logged_model

        return load_logged_model(model)
    return Predictor(find_checkpoint(Path(model)))


def _sample_data(args: argparse.Namespace) -> int:
    from trainer.data.sample_data import write_digits

    write_digits(args.out_dir, args.classes, args.per_class, args.size)
    return 0


def _cache(args: argparse.Namespace) -> int:
    from trainer.data.cache_admin import clear_entries, list_entries
    from trainer.data.cache_files import cache_dir

    directory = cache_dir()
    if args.action == "clear":
        removed, freed = clear_entries(directory, args.entries)
        log.info("removed %d file(s), %.1f MB, from %s", removed, freed / 2**20, directory)
        return 0
    if args.entries:
        raise UserError("trainer cache list takes no PREFIX")
    entries = list_entries(directory)
    for info in entries:
        state = f"{info.filled}/{info.images} images" if info.valid else "invalid (rebuilt on use)"
        print(f"{info.path.name}  {info.nbytes / 2**20:8.1f} MB  {state}")
    total = sum(info.nbytes for info in entries) / 2**20
    print(f"{len(entries)} file(s), {total:.1f} MB in {directory}")
    return 0
