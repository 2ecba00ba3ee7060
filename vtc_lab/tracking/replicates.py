"""Evaluations of trained models as replicates: the one rule for what such a run records about
the model it evaluated, and how `vtc-lab report` then groups it.

Training sweeps tag their runs with the seed (`vtc.seed`) and the configuration without it
(`vtc.config_key`). An evaluation of a trained model (`vtc-lab eval train_run=<run dir>`, or a
`checkpoint=` / export inside one) is run once per model, so on its own it would carry the
eval's sampling seed (`loop.seed`, 0) and the configuration `default`: the seeds of one
configuration would overwrite each other in the report. With the model's identity (its run
record: `vtc_lab.models.reading.run_identity`) the eval run gets:

- params `train.seed`, `train.degrade`, `train.renderer`, `train.run_id` and, when the training
  run recorded it, `train.config` (its own `vtc.config_key`);
- tag `vtc.seed` = the training seed: the models are the replicates. Unless the eval chooses
  its own seed (sweeps a seed key, `seeds=N`, or sets one on the command line): then its
  sampling seed stays the replicate and `train.seed` becomes part of the configuration;
- tag `vtc.config_key` = what the eval varies except the seed, the model's location and how
  the run is carried out (`NOT_SETTINGS`): the job's command-line overrides, swept or fixed
  (what a user changes by hand; a sweep's fixed values differ between sweeps of one
  experiment), plus what the model is besides its seed:
  `train.degrade`, `train.renderer` and a non-default `train.config`.

So the evaluations of the three seeds of one configuration under one eval setting form one
configuration with n = 3, and evaluations that differ in anything else (the eval pages, the
training pages, the renderer, the benchmark size) are other configurations. No mlflow here:
the run handle logs what `trained_model_record` returns.
"""

from __future__ import annotations

from typing import Any, Mapping

from vtc_lab.tracking.sweep import (CONFIG_KEY_TAG, SEED_TAG, SINGLE_RUN_CONFIG_KEY, JobContext,
                                    config_key, is_seed)

PREFIX = "train."
"""Params of the evaluated model's identity: `train.<field of run_identity>`."""
TRAIN_SEED = PREFIX + "seed"
TRAIN_DEGRADE = PREFIX + "degrade"
"""The degradation level of the pages the evaluated model was trained on (`none`: clean)."""
TRAIN_RENDERER = PREFIX + "renderer"
TRAIN_RUN_ID = PREFIX + "run_id"
TRAIN_CONFIG = PREFIX + "config"
MODEL_KEY_PARAMS = (TRAIN_CONFIG, TRAIN_DEGRADE, TRAIN_RENDERER)
"""What a model is besides its seed: part of an eval run's configuration key."""
NOT_SETTINGS = ("train_run", "checkpoint", "model.path", "output_dir", "run_name", "progress",
                "log_images", "grade_workers", "device")
"""Overrides that say where the model or the outputs are (they differ between the seeds of one
configuration) or how the run is carried out, not what is compared: left out of the key."""


def model_params(identity: Mapping[str, Any]) -> dict[str, str]:
    """`run_identity`'s fields as the eval run's params (`seed` -> `train.seed`, ...)."""
    return {PREFIX + k: str(v) for k, v in identity.items() if v is not None}


def eval_tags(identity: Mapping[str, Any], ctx: JobContext) -> dict[str, str]:
    """The `vtc.seed` / `vtc.config_key` tags of an eval run of the model `identity` (see the
    module docstring), in the job `ctx` (a sweep job, a single Hydra run, or nothing)."""
    params = model_params(identity)
    # every command-line override of the job, swept or not: two sweeps of one experiment that
    # fix different values (eval_degrade=none, then eval_degrade=severe) are two settings
    own = {**ctx.overrides, **(ctx.swept or {})}
    setting = {k: v for k, v in own.items() if k not in NOT_SETTINGS and not is_seed(k)}
    eval_seeds = any(is_seed(k) for k in own)
    for key in MODEL_KEY_PARAMS:
        if key in params and not (key == TRAIN_CONFIG and params[key] == SINGLE_RUN_CONFIG_KEY):
            setting[key] = params[key]
    tags = {CONFIG_KEY_TAG: config_key(setting) or SINGLE_RUN_CONFIG_KEY}
    if TRAIN_SEED in params:
        if eval_seeds:
            tags[CONFIG_KEY_TAG] = config_key({**setting, TRAIN_SEED: params[TRAIN_SEED]})
        else:
            tags[SEED_TAG] = params[TRAIN_SEED]
    return tags


def trained_model_record(identity: Mapping[str, Any], tracking_uri: str) -> tuple[dict[str, str],
                                                                                  dict[str, str]]:
    """(params, tags) an eval run of the model `identity` logs, in the Hydra job running now."""
    from vtc_lab.tracking.runs import current_job_context

    return model_params(identity), eval_tags(identity, current_job_context(tracking_uri))


def log_trained_model(run: Any, identity: Mapping[str, Any]) -> None:
    """Log the evaluated model's identity on `run` (a `RunHandle`; a no-op handle logs nothing)."""
    uri = getattr(run, "tracking_uri", None)
    if not uri or not identity:
        return
    params, tags = trained_model_record(identity, uri)
    run.log_params(params)
    run.set_tags(tags)
