"""The report's first screen: what a reader takes in at a glance, per study."""

from __future__ import annotations

import html

import pandas as pd

from studies.report.data import StudyData, best_trial, epochs_spent_and_saved


def summary_html(studies: list[StudyData], trials: pd.DataFrame) -> str:
    """Best trial and its parameters, CV mean ± std, holdout accuracy, trials by state, compute
    spent and saved by pruning: one small table per study."""
    parts = ["<h2>Summary</h2>"]
    for study in studies:
        rows = trials[trials["study"] == study.name]
        parts.append(f"<h3>{html.escape(study.name)}</h3>{_table(_facts(study, rows))}")
    return "\n".join(parts)


def _facts(study: StudyData, rows: pd.DataFrame) -> dict[str, str]:
    complete = rows[rows["state"] == "COMPLETE"]
    best = best_trial(complete)
    params = ", ".join(f"{key}={_fmt(best[key])}" for key in study.searched if key in best)
    spent, saved = epochs_spent_and_saved(rows)
    share = saved / (saved + spent) if saved + spent else 0.0
    states = rows["state"].value_counts()
    return {
        "best trial": f"{int(best['trial'])} ({params or 'no searched parameters'})",
        "CV mean val accuracy": f"{best['value']:.4f} ± {_fmt(best['cv_std'], '.4f')}",
        "holdout accuracy": (
            "not measured yet (`studies promote` refits the best trial and scores it)"
            if pd.isna(best["test_acc"])
            else f"{best['test_acc']:.4f}"
        ),
        "trials": ", ".join(f"{count} {state.lower()}" for state, count in states.items()),
        "compute": f"{rows['seconds'].sum() / 60:.1f} min, {spent} epochs trained",
        "saved by pruning": f"{saved} epochs ({share:.0%} of the work without pruning)",
    }


def _table(facts: dict[str, str]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts.items()
    )
    return f"<table class='summary'>{rows}</table>"


def _fmt(value: object, spec: str = ".4g") -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "n/a"
    return format(value, spec) if isinstance(value, float) else str(value)
