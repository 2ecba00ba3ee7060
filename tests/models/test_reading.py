"""The reading record (`reading.json`): written atomically into a directory, read back equal,
absent for a model trained elsewhere, and a damaged record named with its file."""

from __future__ import annotations

import json

import pytest

from vtc_lab.models.reading import READING_FILE, ReadingSpec, read_reading
from vtc_lab.render.config import RenderConfig


def test_record_round_trips_through_its_file(tmp_path):
    spec = ReadingSpec(RenderConfig(font_size=8.0, page_width=500.0), "a prompt", "after", 40000)
    path = spec.write(tmp_path)
    assert path == tmp_path / READING_FILE
    assert read_reading(tmp_path) == spec
    assert [p.name for p in tmp_path.iterdir()] == [READING_FILE]  # no temp file left behind
    uncapped = ReadingSpec(RenderConfig(), None, "before", None)
    uncapped.write(tmp_path)
    assert read_reading(tmp_path) == uncapped


def test_no_record_and_damaged_records(tmp_path):
    assert read_reading(tmp_path) is None
    (tmp_path / READING_FILE).write_text('{"renderer": {}')
    with pytest.raises(ValueError, match="reading.json: unreadable"):
        read_reading(tmp_path)
    good = ReadingSpec(RenderConfig(), None, "before", 784).to_dict()
    for bad, match in [({**good, "image_max_pixels": 0}, "image_max_pixels must be"),
                       ({**good, "image_max_pixels": True}, "image_max_pixels must be"),
                       ({k: v for k, v in good.items() if k != "image_position"}, "exactly the keys"),
                       ({**good, "renderer": {**good["renderer"], "no_such": 1}}, "renderer config")]:
        (tmp_path / READING_FILE).write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=match):
            read_reading(tmp_path)


def test_a_train_run_resolves_to_its_export_in_one_place(tmp_path):
    """`train_run=` means the same export to eval and serve (issue 22 §5), with the same refusals."""
    import json

    from vtc_lab.models.config import ModelConfig
    from vtc_lab.models.reading import run_export, run_export_model
    from vtc_lab.serve.config import ServeConfig
    from vtc_lab.serve.run import resolve_model

    run = tmp_path / "run-3"
    with pytest.raises(ValueError, match=r"run-3/run.json not found"):
        run_export(run)
    run.mkdir()
    (run / "run.json").write_text(json.dumps({}))
    with pytest.raises(ValueError, match=r"run-3/export holds no exported model"):
        resolve_model(ServeConfig(train_run=str(run)))
    (run / "export").mkdir()
    (run / "export" / "config.json").write_text("{}")
    like = ModelConfig(dtype="bfloat16")
    model = run_export_model(run, like)
    assert (model.name, model.source, model.path, model.dtype) == (
        "run-3", "pretrained", str(run / "export"), "bfloat16")
    served = resolve_model(ServeConfig(train_run=str(run), model=like))
    assert served.model == model and served.train_run is None


def test_a_run_directory_names_its_model(tmp_path):
    """`run_identity`: seed, training pages, renderer hash, MLflow run and configuration, as
    run.json records them; a run from before the seed was recorded takes it from the Hydra
    job config in its directory; what nothing records is left out; a damaged record is named."""
    import yaml

    from vtc_lab.models.reading import model_run_dir, run_identity
    from vtc_lab.render.config import config_hash
    from vtc_lab.render.degrade import DegradeConfig

    run = tmp_path / "toy" / "1"
    (run / "checkpoints").mkdir(parents=True)
    renderer = RenderConfig(font_size=8.0, degrade=DegradeConfig(level="moderate"))
    reading = ReadingSpec(renderer, None, "after", None).to_dict()
    (run / "run.json").write_text(json.dumps({"seed": 1, "mlflow_run_id": "abc123",
                                              "config_key": "memory=optical", "reading": reading}))
    assert run_identity(run) == {"seed": 1, "degrade": "moderate", "renderer": config_hash(renderer),
                                 "run_id": "abc123", "config": "memory=optical"}
    assert config_hash(renderer) != config_hash(RenderConfig(font_size=8.0))
    # the checkpoint's and the export's run directory; weights from anywhere else have none
    assert model_run_dir(None, str(run / "checkpoints" / "last.ckpt")) == run
    assert model_run_dir(str(run / "export"), None) == run
    assert model_run_dir(str(tmp_path / "export"), None) is None
    assert model_run_dir(str(run), None) is None and model_run_dir(None, None) is None

    clean = ReadingSpec(RenderConfig(), None, "after", None).to_dict()
    del clean["renderer"]["degrade"]  # a record from before page degradations existed
    (run / "run.json").write_text(json.dumps({"reading": clean, "mlflow_run_id": None}))
    assert run_identity(run) == {"degrade": "none", "renderer": config_hash(RenderConfig())}
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"optim": {"seed": 2}}))
    assert run_identity(run)["seed"] == 2
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"optim": {"seed": "${x}"}}))
    assert "seed" not in run_identity(run)

    (run / "run.json").write_text('{"seed": 1')
    with pytest.raises(ValueError, match=r"toy/1/run.json: unreadable"):
        run_identity(run)
    (run / "run.json").write_text(json.dumps({"reading": {"renderer": {}}}))
    with pytest.raises(ValueError, match=r"run.json: the reading record must have exactly"):
        run_identity(run)
