"""What a user sees first when opening an experiment in the MLflow UI (3.x).

Two things decide it, both found in MLflow 3.17's UI code and checked in a real browser
(experiments/ui/mlflow_ui_check.py):
- the *workflow type*, a UI-wide choice between the GenAI pages and the model-training pages
  (browser local storage, default GenAI: the experiment opens on the empty GenAI overview, and
  the experiment tag `mlflow.experimentKind` does not override it). The URL parameter
  `workflowType=machine_learning` selects the training pages, and the UI keeps that choice;
- the runs table's columns and sort: browser state too, except for a *saved view*, an
  experiment tag `mlflow.sharedViewState.<id>` holding `{name, createdAt, updatedAt, state}`
  with `state` the UI state as a JSON string (`selectedColumns`, `orderByKey`, ...). The UI
  lists it under *Views* and applies it on opening `...runs?viewStateShareKey=<id>`.

So vtc-lab saves one view per experiment, `vtc-lab: headline metrics` (the headline metric and
param columns, the model's own memory accuracy first), and prints the link that opens it
(`experiment_url`). Column ids are MLflow's canonical keys: metrics.`<key>`, params.`<key>`.
"""

from __future__ import annotations

import fnmatch
import json
import time
from typing import Any, Iterable

VIEW_TAG_PREFIX = "mlflow.sharedViewState."
VIEW_ID = "vtc-headline"
VIEW_NAME = "vtc-lab: headline metrics"
HEADLINE_METRICS = ("eval/*/memory/accuracy", "eval/*/none/accuracy", "eval/*/*/accuracy",
                    "eval/*/memory/read_rate", "eval/*/memory/compression_ratio",
                    "eval/*/memory/context_tokens_mean", "val/loss", "train/loss",
                    "train/samples_seen")
"""Metric columns of the view, in this order (patterns; the keys the runs have)."""
HEADLINE_PARAMS = ("memory", "seed", "backbone", "font_size", "seg_budget", "max_steps")
HEADLINE_TAGS = ("vtc.config_key",)


def _ordered(keys: Iterable[str], patterns: Iterable[str]) -> list[str]:
    keys = sorted(set(keys))
    out: list[str] = []
    for pattern in patterns:
        out += [k for k in keys if fnmatch.fnmatchcase(k, pattern) and k not in out]
    return out


def view_state(metric_keys: Iterable[str], param_keys: Iterable[str],
               tag_keys: Iterable[str] = ()) -> dict[str, Any]:
    """The UI state of the headline view for runs having these metrics / params / tags."""
    metrics = _ordered(metric_keys, HEADLINE_METRICS)
    params = [p for p in HEADLINE_PARAMS if p in set(param_keys)]
    tags = [t for t in HEADLINE_TAGS if t in set(tag_keys)]
    columns = ([f"metrics.`{m}`" for m in metrics] + [f"params.`{p}`" for p in params]
               + [f"tags.`{t}`" for t in tags])
    state: dict[str, Any] = {"selectedColumns": columns, "runsExpanded": {}}
    if metrics:
        state.update(orderByKey=f"metrics.`{metrics[0]}`", orderByAsc=False)
    return state


def publish_view(client: Any, experiment_id: str, state: dict[str, Any]) -> str:
    """Save `state` as the experiment's headline view (replacing an earlier one); its id."""
    now = int(time.time() * 1000)
    envelope = {"name": VIEW_NAME, "createdAt": now, "updatedAt": now,
                "state": json.dumps(state, sort_keys=True)}
    client.set_experiment_tag(experiment_id, VIEW_TAG_PREFIX + VIEW_ID, json.dumps(envelope))
    return VIEW_ID


def publish_runs_view(client: Any, experiment_id: str, runs: Iterable[Any]) -> str:
    """The headline view for `runs` (mlflow Run objects): the columns they have."""
    metrics: set[str] = set()
    params: set[str] = set()
    tags: set[str] = set()
    for run in runs:
        metrics |= set(run.data.metrics)
        params |= set(run.data.params)
        tags |= set(run.data.tags)
    return publish_view(client, experiment_id, view_state(metrics, params, tags))


def experiment_url(base_url: str, experiment_id: str, view_id: str | None = VIEW_ID) -> str:
    """The link that opens the experiment's runs table (training pages, headline view)."""
    url = f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    return url + (f"&viewStateShareKey={view_id}" if view_id else "")
