"""OpticalMemoryEvaluator inside a real Lightning fit of the tiny model, logging to real MLflow."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from mlflow.tracking import MlflowClient

from vtc_lab.infer.config import LoopConfig
from vtc_lab.models import ModelConfig, load_backbone
from vtc_lab.models.reading import ReadingSpec
from vtc_lab.render.config import RenderConfig
from vtc_lab.train.evaluator import EvaluatorConfig, OpticalMemoryEvaluator
from vtc_lab.tracking import TrackingConfig, start_run


class LMStep(pl.LightningModule):
    """Smallest honest training step: next-token loss of the backbone on a fixed sequence."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.model = backbone.model
        self.modes_seen: list[bool] = []
        self.visual_modes: list[bool] = []

    def training_step(self, batch, batch_idx):
        self.modes_seen.append(self.model.training)
        self.visual_modes.append(self.model.model.visual.training)
        ids = batch[0]
        return self.model(input_ids=ids, labels=ids).loss

    def train_dataloader(self):
        ids = torch.randint(5, 200, (4, 12), generator=torch.Generator().manual_seed(0))
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(ids), batch_size=2)

    def configure_optimizers(self):
        return torch.optim.SGD(self.model.parameters(), lr=0.1)


def test_evaluator_runs_every_n_steps_and_logs(tmp_path):
    torch.set_num_threads(1)
    backbone = load_backbone(ModelConfig())
    cfg = EvaluatorConfig(enabled=True, every_n_steps=2, at_validation_end=False, limit=2,
                          loops=["optical", "none"], log_images=1,
                          loop=LoopConfig(max_rounds=2, max_new_tokens=6, do_sample=False,
                                          samples_per_problem=1, batch_size=2))
    with start_run(TrackingConfig(mode="local"), None, tmp_path) as run:
        evaluator = OpticalMemoryEvaluator(
            cfg, reading=ReadingSpec(RenderConfig(), "sys", "before", None), run=run)
        module = LMStep(backbone)
        backbone.model.model.visual.eval()  # e.g. a frozen tower kept in eval mode
        before = [p.detach().clone() for p in backbone.model.parameters()]
        trainer = pl.Trainer(max_steps=4, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, callbacks=[evaluator], accelerator="cpu")
        trainer.fit(module)
        run_id = run.run_id
    assert [step for step, _ in evaluator.history] == [2, 4]
    assert all(module.modes_seen)  # training mode restored after each evaluation
    assert module.visual_modes and not any(module.visual_modes)  # ...per submodule
    assert any(not torch.equal(a, b) for a, b in zip(before, backbone.model.parameters()))
    metrics = evaluator.history[-1][1]
    assert metrics["eval/math500/optical/num_samples"] == 2
    assert metrics["eval/math500/none/context_vision_tokens_mean"] == 0

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    history = client.get_metric_history(run_id, "eval/math500/optical/accuracy")
    assert sorted(m.step for m in history) == [2, 4]
    tables = {a.path for a in client.list_artifacts(run_id, "eval/predictions")}
    assert "eval/predictions/math500" in tables
    memory = client.list_artifacts(run_id, "eval/memory")
    assert memory  # pages of the optical loop's first sample, per step
    # the benchmark it evaluated on is the run's evaluation dataset input (once, not per step)
    inputs = client.get_run(run_id).inputs.dataset_inputs
    assert [(d.dataset.name, [(t.key, t.value) for t in d.tags]) for d in inputs] == [
        ("math500", [("mlflow.data.context", "evaluation")])]
    from vtc_lab.eval import BenchmarkConfig, load_benchmark

    full = load_benchmark(BenchmarkConfig(name="math500"))
    assert inputs[0].dataset.digest == full.fingerprint
    assert '"problems": 2' in inputs[0].dataset.profile and '"total": 500' in inputs[0].dataset.profile
