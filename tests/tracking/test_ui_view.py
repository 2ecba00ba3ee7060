"""The headline view saved on an experiment: the tag MLflow 3's UI reads (real sqlite store)."""

from __future__ import annotations

import json

from mlflow.tracking import MlflowClient

from vtc_lab.tracking.ui_view import (
    VIEW_ID, VIEW_NAME, VIEW_TAG_PREFIX, experiment_url, publish_view, view_state)


def test_view_state_puts_the_memory_accuracy_first_and_only_existing_columns():
    state = view_state(["eval/toy/none/accuracy", "eval/toy/memory/accuracy", "train/loss",
                        "eval/toy/memory/read_rate", "sweep/jobs_total"],
                       ["memory", "seed", "hparams.x"], ["vtc.config_key", "host"])
    assert state["selectedColumns"] == [
        "metrics.`eval/toy/memory/accuracy`", "metrics.`eval/toy/none/accuracy`",
        "metrics.`eval/toy/memory/read_rate`", "metrics.`train/loss`",
        "params.`memory`", "params.`seed`", "tags.`vtc.config_key`"]
    assert state["orderByKey"] == "metrics.`eval/toy/memory/accuracy`"


def test_published_view_is_the_envelope_the_ui_parses(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("toy", artifact_location=str(tmp_path / "art"))
    state = view_state(["eval/toy/memory/accuracy"], ["memory"])
    assert publish_view(client, exp, state) == VIEW_ID
    envelope = json.loads(client.get_experiment(exp).tags[VIEW_TAG_PREFIX + VIEW_ID])
    assert envelope["name"] == VIEW_NAME and isinstance(envelope["createdAt"], int)
    assert json.loads(envelope["state"]) == state  # `state` is a JSON string, as the UI wants
    assert experiment_url("http://h:1/", exp) == (
        f"http://h:1/#/experiments/{exp}/runs?workflowType=machine_learning"
        f"&viewStateShareKey={VIEW_ID}")
