"""Determinism of the main job (experiment=toy), shrunk: same seed and thread count -> the same
weights bit for bit with the in-training evaluator on; and the evaluator's per-problem results at
step N equal `vtc-lab eval experiment=toy_eval` on that run's step-N checkpoint (issue 19: the two
presets decoded with different budgets, so the offline curve disagreed with the logged one)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from vtc_lab.cli._hydra import CONF_DIR
from vtc_lab.cli.eval import EvalConfig  # noqa: F401 - registers the eval schema
from vtc_lab.cli.train import TrainConfig  # noqa: F401 - registers the train schema
from vtc_lab.train.evaluator import preserved_rng

torch.set_num_threads(1)

# What decides a greedy loop's outputs (the rest is bookkeeping or throughput).
# (samples_per_problem: greedy loops refuse more than one sample, so it is always 1 here.)
DECODING = ("max_rounds", "max_new_tokens", "do_sample", "temperature", "top_p", "top_k",
            "repetition_penalty", "seed", "max_context_tokens", "context_policy",
            "min_render_tokens")


def _compose(app: str, overrides: list[str]):
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        return OmegaConf.to_object(compose(app, overrides=overrides))


def _train(root: Path, name: str, *extra: str) -> dict:
    from vtc_lab.train.run import train

    return train(_compose("train", [
        "experiment=toy", "optim.memory=optical", f"output_root={root}", f"run_dir={root}/{name}",
        "data.limit=48", "optim.batch_size=4", "optim.warmup_ratio=0", "optim.val_max_samples=4",
        "optim.val_fraction=0.1", "evaluator.limit=3", *extra]))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def test_toy_eval_decodes_like_the_toy_jobs_evaluator():
    """The offline preset re-scores the main job's checkpoints: same loop settings, same
    problems, else its curve is another measurement than the one logged during training."""
    train = _compose("train", ["experiment=toy"])
    offline = _compose("eval", ["experiment=toy_eval"])
    for name in DECODING:
        assert getattr(offline.loop, name) == getattr(train.evaluator.loop, name), name
    # the page cap is the model's setting (the eval of a train_run takes the recorded one)
    assert offline.model.image_max_pixels == train.model.image_max_pixels
    assert offline.benchmark.limit == train.evaluator.limit
    assert offline.benchmark.seed == train.evaluator.subset_seed
    assert offline.benchmark.name == train.evaluator.benchmarks[0]


def test_preserved_rng_restores_every_global_generator():
    torch.manual_seed(3), random.seed(3), np.random.seed(3)
    expected = (torch.rand(4), random.random(), np.random.rand())
    torch.manual_seed(3), random.seed(3), np.random.seed(3)
    with preserved_rng("cpu"):
        drawn = (torch.rand(4), random.random(), np.random.rand())
    after = (torch.rand(4), random.random(), np.random.rand())
    assert torch.equal(drawn[0], expected[0])  # the block itself draws as usual
    assert torch.equal(after[0], expected[0]) and after[1:] == expected[1:]


def test_same_seed_same_weights_with_the_evaluator_between_steps(tmp_path):
    """Two same-seed runs, each evaluated every 3 steps, end bit-identical; a run without the
    evaluator ends identical too (evaluation does not move training's random state); another
    seed differs (the comparison can fail)."""
    common = ["optim.max_steps=6", "optim.val_check_interval=3", "optim.checkpoint_every_n_steps=6",
              "evaluator.loop.max_rounds=2", "evaluator.loop.max_new_tokens=8", "export=false",
              "tracking=off"]
    runs = {"a": _train(tmp_path, "a", *common), "b": _train(tmp_path, "b", *common),
            "off": _train(tmp_path, "off", *common, "evaluator=off"),
            "seed1": _train(tmp_path, "seed1", *common, "optim.seed=1")}
    assert "eval/toy/memory/accuracy" in runs["a"] and "eval/toy/memory/accuracy" not in runs["off"]
    w = {k: _weights(Path(r["checkpoint"])) for k, r in runs.items()}
    assert w["a"].keys() == w["b"].keys() == w["off"].keys()
    for other in ("b", "off"):
        assert [k for k in w["a"] if not torch.equal(w["a"][k], w[other][k])] == [], other
    assert any(not torch.equal(w["a"][k], w["seed1"][k]) for k in w["a"])


@pytest.mark.parametrize("memory", ["optical", "text"])
def test_the_evaluators_results_at_step_n_equal_offline_eval_of_the_step_n_checkpoint(tmp_path, memory):
    """The toy job's evaluator at step 4 (training goes on to 6) and `vtc-lab eval
    experiment=toy_eval` on step-4.ckpt, both with their presets' loop settings (only the number
    of problems shrunk): the same outputs, round by round, for every problem."""
    from mlflow.tracking import MlflowClient

    from vtc_lab.infer.offline import evaluate

    limit = 3
    result = _train(tmp_path, "run", f"optim.memory={memory}", "optim.max_steps=6",
                    "optim.val_check_interval=4", "optim.checkpoint_every_n_steps=4",
                    f"evaluator.loops=[{memory}]", f"evaluator.limit={limit}")
    ckpt = tmp_path / "run" / "checkpoints" / "step-4.ckpt"
    assert ckpt.is_file()
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    table = Path(client.download_artifacts(
        result["mlflow_run_id"], f"eval/predictions/toy/{memory}/step_0000004.json", str(tmp_path)))
    logged = json.loads(table.read_text())
    logged = [dict(zip(logged["columns"], row)) for row in logged["data"]]
    assert len(logged) == limit

    out = tmp_path / "offline"
    evaluate(_compose("eval", [
        "experiment=toy_eval", f"train_run={tmp_path}/run", f"checkpoint={ckpt}",
        f"benchmark.limit={limit}", f"loops=[{memory}]", f"output_root={tmp_path}",
        f"output_dir={out}", "tracking=off", "progress=false", "grade_workers=1"]))
    offline = [json.loads(line) for line in (out / f"toy__{memory}.graded.jsonl").open()]
    assert [r["problem_id"] for r in offline] == [r["problem_id"] for r in logged]
    for row, rec in zip(logged, offline):
        assert [r["text"] for r in rec["rounds"]] == list(row["outputs"]), row["problem_id"]
        assert (rec["prediction"], rec["correct_strict"]) == (row["prediction"], row["correct_strict"])
