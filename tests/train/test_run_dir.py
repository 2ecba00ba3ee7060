"""The run directory is decided once per `train` call (issue 22 §4): outside Hydra and without
`run_dir`, the default is a timestamp, and the lock and the run must agree on it."""

from __future__ import annotations

import itertools
import time

import torch

from tests.train.test_dataset_spec import _compose

torch.set_num_threads(1)


def test_the_locked_directory_is_the_run_directory(tmp_path, monkeypatch):
    """Each call of the clock says a later second (as on a slow machine crossing a second
    boundary): the run must still land in the one directory it locked."""
    from vtc_lab.train.run import train

    cfg = _compose("train", ["data.limit=4", f"output_root={tmp_path}", "tracking.mode=off",
                             "progress=false", "optim.max_steps=1", "optim.batch_size=2",
                             "optim.val_fraction=0", "export=false"])
    assert cfg.run_dir is None
    ticks = itertools.count()
    real = time.strftime
    monkeypatch.setattr(time, "strftime",
                        lambda fmt, *a: f"2026-01-01_00-00-{next(ticks):02d}" if not a else real(fmt, *a))
    result = train(cfg)
    runs = sorted(p.name for p in (tmp_path / "train").iterdir())
    assert len(runs) == 1 and str(tmp_path / "train" / runs[0]) == result["run_dir"]
    assert (tmp_path / "train" / runs[0] / "run.json").is_file()
