"""`ReadingSpec`: what a trained model was taught to read, recorded once and read back.

A checkpoint only answers well when inference feeds it what training fed it: pages drawn by the
same renderer, the same system turn, memory images on the same side of the question, and pages
downscaled by the same pixel cap. Training writes this record into its run (`run.json`, key
`reading`) and next to its export (`reading.json` in the export directory); `vtc-lab eval
train_run=...` and `vtc-lab eval` of an export read it back instead of trusting presets.
It lives with the backbones because, like the pixel cap (`vtc_lab.models.images`), it is a
property of the exported model, and both the trainer and the inference stage sit above it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vtc_lab import atomic
from vtc_lab.render.config import RenderConfig

READING_FILE = "reading.json"
"""File name of the record inside an export directory."""


@dataclass(frozen=True)
class ReadingSpec:
    """How the model reads its input: renderer, system prompt, image position, pixel cap."""

    renderer: RenderConfig
    """The renderer the training pages were drawn with (the optical loop must draw the same)."""
    system_prompt: str | None
    """System turn of every training sample (None: no system turn)."""
    image_position: str
    """Memory images before or after the question in the training samples."""
    image_max_pixels: int | None
    """Pixel cap applied to each page before the processor saw it (None: uncapped)."""

    def to_dict(self) -> dict[str, Any]:
        return {"renderer": dataclasses.asdict(self.renderer), "system_prompt": self.system_prompt,
                "image_position": self.image_position, "image_max_pixels": self.image_max_pixels}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "ReadingSpec":
        """Parse a recorded dict; `where` names the file in the error when it is not one."""
        keys = {"renderer", "system_prompt", "image_position", "image_max_pixels"}
        if not isinstance(data, dict) or set(data) != keys:
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{where}: the reading record must have exactly the keys "
                             f"{sorted(keys)}, got {got}; re-export the model with this vtc-lab")
        cap = data["image_max_pixels"]
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise ValueError(f"{where}: image_max_pixels must be a positive int or null, got {cap!r}")
        try:
            renderer = RenderConfig(**data["renderer"])
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: unreadable renderer config ({err})") from None
        return cls(renderer=renderer, system_prompt=data["system_prompt"],
                   image_position=data["image_position"], image_max_pixels=cap)

    def write(self, directory: str | os.PathLike) -> Path:
        """Write `reading.json` into `directory` atomically; returns its path."""
        return atomic.write_json(Path(directory) / READING_FILE, self.to_dict())


def read_reading(directory: str | os.PathLike) -> ReadingSpec | None:
    """The record in an export directory, or None when it has none (a model not trained here)."""
    path = Path(directory) / READING_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable ({err}); delete it and set renderer / system_prompt "
                         "/ image_position / model.image_max_pixels by hand") from None
    return ReadingSpec.from_dict(data, str(path))


RUN_INFO = "run.json"
"""The record of a `vtc-lab train` run directory (MLflow run, dataset, `reading`)."""
EXPORT_DIR = "export"
"""Where `vtc-lab train` writes its `save_pretrained` export inside the run directory."""


def run_export(run_dir: str | os.PathLike) -> Path:
    """The export of a `vtc-lab train` run directory (`<run_dir>/export`), checked: the one
    place `train_run=` (eval, serve) becomes a model directory."""
    run = Path(run_dir)
    if not (run / RUN_INFO).is_file():
        raise ValueError(f"train_run: {run / RUN_INFO} not found (not a `vtc-lab train` run "
                         "directory)")
    export = run / EXPORT_DIR
    if not (export / "config.json").is_file():
        raise ValueError(f"train_run: {export} holds no exported model (train with export=true, "
                         "or evaluate checkpoints/last.ckpt with checkpoint=... and its model)")
    return export


def run_export_model(run_dir: str | os.PathLike, like: Any) -> Any:
    """The `ModelConfig` of a run's export (named after the run directory), keeping `like`'s
    dtype, attention implementation and page cap (how to load and feed it, not what it is;
    eval checks the cap against the run's reading record)."""
    from vtc_lab.models.config import ModelConfig

    return ModelConfig(name=Path(run_dir).name, source="pretrained", arch="auto",
                       path=str(run_export(run_dir)), dtype=like.dtype,
                       attn_implementation=like.attn_implementation,
                       image_max_pixels=like.image_max_pixels)


def run_reading(run_dir: str | os.PathLike) -> tuple[ReadingSpec, str]:
    """What a run's model was trained to read, and the file it was read from: the export's
    reading.json, else run.json's `reading`. A run without either (from a vtc-lab before the
    record existed) is refused: nothing else says the pixel cap it was trained with."""
    export = run_export(run_dir)
    spec = read_reading(export)
    if spec is not None:
        return spec, str(export / READING_FILE)
    info_path = Path(run_dir) / RUN_INFO
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"train_run: {info_path}: unreadable ({err})") from None
    if not isinstance(info, dict) or "reading" not in info:
        raise ValueError(
            f"train_run: {Path(run_dir)} records no reading (neither {export / READING_FILE} nor "
            f"a `reading` in {info_path}: a run from an older vtc-lab). Evaluate its export with "
            f"settings of your own: model=local model.path={export} renderer=... "
            "system_prompt=... image_position=... model.image_max_pixels=...")
    return ReadingSpec.from_dict(info["reading"], str(info_path)), str(info_path)


def model_run_dir(model_path: str | None, checkpoint: str | None) -> Path | None:
    """The `vtc-lab train` run directory the evaluated weights come from, when they lie in one:
    a `checkpoint` at `<run>/checkpoints/<file>`, else a model directory that is a run's export
    (`<run>/export`, what `train_run=` resolves to); None for weights from anywhere else."""
    if checkpoint:
        run = Path(checkpoint).parent.parent
        return run if (run / RUN_INFO).is_file() else None
    if model_path and Path(model_path).name == EXPORT_DIR:
        run = Path(model_path).parent
        return run if (run / RUN_INFO).is_file() else None
    return None


def _recorded_seed(run: Path, info: dict[str, Any]) -> int | None:
    """run.json's `seed`; for runs recorded before it was, the `optim.seed` of the Hydra job
    config Hydra keeps in the run directory (`.hydra/config.yaml`, when the run directory was
    the job's); None when neither says it as an integer."""
    seed = info.get("seed")
    if seed is None:
        import yaml

        try:
            seed = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())["optim"]["seed"]
        except (OSError, yaml.YAMLError, KeyError, TypeError):
            return None
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def run_identity(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Which trained model a run directory holds, as its record says: `seed` (optim.seed),
    `degrade` (the degradation level of the pages it was trained on, `none` when clean),
    `renderer` (the hash of the renderer that drew them, `vtc_lab.render.config.config_hash`),
    `run_id` (its MLflow run) and `config` (its configuration key, the swept values except the
    seed); what the record lacks is left out. Evaluations log it so that the evaluations of
    the seeds of one configuration are told apart and grouped without the run directory."""
    from vtc_lab.render.config import config_hash

    run = Path(run_dir)
    info_path = run / RUN_INFO
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{info_path}: unreadable ({err})") from None
    if not isinstance(info, dict):
        raise ValueError(f"{info_path}: not a `vtc-lab train` run record (a JSON "
                         f"{type(info).__name__}, not an object)")
    if "reading" in info:
        spec: ReadingSpec | None = ReadingSpec.from_dict(info["reading"], str(info_path))
    else:
        spec = read_reading(run / EXPORT_DIR) if (run / EXPORT_DIR).is_dir() else None
    out: dict[str, Any] = {"seed": _recorded_seed(run, info)}
    if spec is not None:
        out["degrade"] = spec.renderer.degrade.level
        out["renderer"] = config_hash(spec.renderer)
    out["run_id"] = info.get("mlflow_run_id")
    out["config"] = info.get("config_key")
    return {k: v for k, v in out.items() if v is not None}
