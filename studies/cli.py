"""``studies`` command line: run, report, promote."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from trainer import interrupts
from trainer.cli import EXIT_INTERRUPTED, EXIT_TERMINATED, run_guarded
from trainer.errors import Terminated, UserError

if TYPE_CHECKING:
    import optuna

    from studies.runner import RunSettings

log = logging.getLogger("studies")

# After an interrupt is passed on, how long workers get to end their trials and runs before
# being terminated (they ignore it while cleaning up), then killed.
WORKER_STOP_SECONDS = (60.0, 10.0)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``studies``."""
    parser = argparse.ArgumentParser(prog="studies", description="Optuna studies of trainer fits")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_run(commands)

    report = commands.add_parser("report", help="HTML comparison report from the MLflow store")
    report.add_argument("names", nargs="+", help="study names (MLflow experiments)")
    report.add_argument("--out", type=Path, help="HTML file (default: reports/NAME.html)")
    report.add_argument("--top", type=int, default=5, help="trials whose learning curves are drawn")
    report.set_defaults(handler=_report)

    promote = commands.add_parser("promote", help="refit the best trial and register it")
    promote.add_argument("name", help="study name")
    promote.add_argument("--model-name", help="registered model name (default: the study name)")
    promote.add_argument("--force", action="store_true", help="make it champion regardless")
    promote.set_defaults(handler=_promote)

    doctor = commands.add_parser(
        "doctor", help="check a study's Optuna trials against its MLflow runs (and repair)"
    )
    doctor.add_argument("name", help="study name")
    doctor.add_argument(
        "--storage", help="Optuna storage (default: the one the study run records, else journal)"
    )
    doctor.add_argument("--fix", action="store_true", help="repair what can be repaired")
    doctor.set_defaults(handler=_doctor)
    return parser


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser("run", help="run (or resume) a study")
    run.add_argument("study", type=Path, help="study YAML file")
    run.add_argument("--n-trials", type=int, help="total trials wanted (tops up; default: file)")
    run.add_argument("--timeout", type=float, help="seconds after which no new trial starts")
    run.add_argument(
        "--workers",
        help="worker processes on this machine, this one included: a number, or auto (one per "
        "GPU, each on its own; without GPU one per core, at most 4; default: the file's "
        "workers:, else auto)",
    )
    run.add_argument("--storage", help="Optuna storage: journal file path or database URL")
    run.add_argument("--name", help="study name (default: the file's name:)")
    run.add_argument("--as-worker", action="store_true", help=argparse.SUPPRESS)
    run.set_defaults(handler=_run)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``studies`` console script."""
    args = build_parser().parse_args(argv)  # --help ends here, before optuna is imported
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # trial lines are ours, one per trial
    return run_guarded(args.handler, args, debug=args.debug)


def _settings(args: argparse.Namespace) -> RunSettings:
    from studies.config import load_study_config
    from studies.runner import RunSettings

    # Workers load the file their parent already checked: skip the backbone size checks.
    study, base = load_study_config(args.study, check_models=not args.as_worker)
    updates = {k: v for k, v in (("name", args.name), ("storage", args.storage)) if v}
    study = study.model_copy(update=updates)
    if args.n_trials is not None and args.n_trials < 1:
        raise UserError("--n-trials must be at least 1")
    return RunSettings(
        study=study,
        base=base,
        n_trials=args.n_trials or study.n_trials,
        timeout=args.timeout if args.timeout is not None else study.timeout,
    )


def _run(args: argparse.Namespace) -> int:
    from studies.placement import worker_count
    from studies.reservations import trials_left
    from studies.runner import open_study, prepare_resume, run_worker, tidy

    # The first SIGINT or SIGTERM interrupts; later ones are ignored so the cleanup runs to its
    # end. Ctrl-C reaches every process of the group at once, and the parent passes it on too.
    interrupts.install(once=True)
    settings = _settings(args)
    if args.as_worker:
        return _run_as_worker(settings)
    requested = str(args.workers or settings.study.workers)
    workers = worker_count(requested)
    study, handle = open_study(settings)
    if requested == "auto":  # no process started only to find the study complete
        workers = max(1, min(workers, trials_left(study, settings.n_trials)))
    space = {k: v.model_dump() for k, v in settings.study.search_space.items()}
    tracker = prepare_resume(study, handle, space)
    tracker.mark_study("RUNNING")
    status = "FAILED"
    try:
        if workers == 1:
            run_worker(settings)
        else:
            _run_with_workers(args, workers, settings, settings.study.storage or handle.url)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if workers > 1:
            tidy(study, handle, tracker)  # trials and runs of workers that had to be killed
        tracker.update_best()
        tracker.mark_study(status)
    _summary(study, handle.url, settings.n_trials)
    return 0


def _run_as_worker(settings: RunSettings) -> int:
    """One of the extra workers a ``studies run`` process started: trials only."""
    from studies.runner import run_worker
    from trainer.fit import silence_data_warnings

    silence_data_warnings()  # the studies run process that started this one says it
    try:
        run_worker(settings)
    except KeyboardInterrupt as interrupt:  # the parent reports it, once
        return EXIT_TERMINATED if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED
    return 0


def _report(args: argparse.Namespace) -> int:
    from studies.report.build import check_names, write_report

    check_names(args.names)
    path = write_report(args.names, args.out, args.top)
    print(path)
    return 0


def _promote(args: argparse.Namespace) -> int:
    from studies.promote import promote

    version = promote(args.name, args.model_name, args.force)
    uri = f"models:/{version.name}/{version.version}"
    print(f"{uri} ({version.tags.get('decision', '')})")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    import optuna

    from studies.doctor import examine, recorded_storage
    from studies.storage import open_storage
    from trainer.tracking import open_client

    client = open_client()
    storage = args.storage or recorded_storage(client, args.name)
    handle = open_storage(storage)
    try:
        study = optuna.load_study(study_name=args.name, storage=handle.storage)
    except KeyError:
        raise UserError(
            f"no study {args.name!r} in {handle.url}; pass the storage it runs in with --storage"
        ) from None
    return examine(study, handle, client, args.fix)


def _run_with_workers(
    args: argparse.Namespace, count: int, settings: RunSettings, storage: str
) -> None:
    """Run trials here as one of ``count`` workers, the others in processes of their own.

    This process trains while the others import torch and start: a worker costs no idle
    seconds, so even a short study gains from one per core.
    """
    from studies.placement import use_worker_threads, worker_environments
    from studies.runner import run_worker

    base = [sys.executable, "-m", "studies", "run", str(args.study), "--as-worker"]
    base += ["--storage", storage, "--name", settings.study.name]
    base += ["--n-trials", str(args.n_trials)] if args.n_trials else []
    base += ["--timeout", str(args.timeout)] if args.timeout else []
    others = worker_environments(count, dict(os.environ))[1:]  # the first is this process's
    workers = [subprocess.Popen(base, env=env) for env in others]
    try:
        use_worker_threads(count)  # this process is worker 0: its threads, the first GPU
        run_worker(settings)
        codes = [worker.wait() for worker in workers]
    except KeyboardInterrupt as interrupt:
        passed_on = signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT
        _stop_workers(workers, passed_on)
        raise
    except BaseException:
        for worker in workers:  # they end on their own: the study's limits are theirs too
            worker.wait()
        raise
    if any(codes):
        raise UserError(
            f"{sum(1 for c in codes if c)} of {len(codes)} other workers failed "
            f"(exit codes {codes})"
        )


def _stop_workers(workers: list[subprocess.Popen[bytes]], signum: int) -> None:
    """Pass the interrupt on (a worker that already has it ignores it), wait for the workers to
    end their trials, then terminate and at last kill those still there."""
    steps = [(signum, WORKER_STOP_SECONDS[0]), (signal.SIGTERM, WORKER_STOP_SECONDS[1])]
    for step, seconds in steps:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(step)
        deadline = time.monotonic() + seconds
        for worker in workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(timeout=max(0.0, deadline - time.monotonic()))
    for worker in workers:
        if worker.poll() is None:
            log.warning("worker %d did not stop; killing it", worker.pid)
            worker.kill()
            worker.wait()


def _summary(study: optuna.Study, storage: str, wanted: int) -> None:
    states = Counter(t.state.name for t in study.get_trials(deepcopy=False))
    log.info(
        "study %s: %s (wanted %d)",
        study.study_name,
        ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items())),
        wanted,
    )
    try:
        best = study.best_trial
        log.info(
            "best: trial %d, CV val acc %.4f, %s (MLflow run %s)",
            best.number,
            best.value or 0.0,
            best.params,
            best.user_attrs.get("mlflow_run_id"),
        )
    except ValueError:
        log.info("no trial completed yet")
    log.info("browse: make ui (MLflow UI) | optuna-dashboard %s", storage)
