"""Every app's primary config composes, alone and with every option of every group it uses,
with every experiment preset (and every point of the preset's sweep), and with the launcher /
sweeper presets; all through Hydra's compose API + `OmegaConf.to_object`, so a stale preset
(renamed field, wrong value, missing file) fails here instead of in a user's run."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

from vtc_lab.cli._hydra import CONF_DIR

CONF = Path(CONF_DIR)
# common: a shared overlay; serve: a server, not an experiment (no MLflow run, no outputs),
# whose config tests/serve/test_serve_config.py composes.
NOT_APPS = {"common", "serve"}
APPS = sorted(p.stem for p in CONF.glob("*.yaml") if p.stem not in NOT_APPS)
PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def _app_module(app: str):
    return importlib.import_module(f"vtc_lab.cli.{app}")  # registers `<app>_schema`


@pytest.fixture(scope="module", autouse=True)
def _hydra_once():
    """One Hydra initialisation for the module (per-test re-initialisation tripled its time)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield


def _compose(app: str, overrides: list[str] = (), hydra: bool = False):
    _app_module(app)
    return compose(config_name=app, overrides=list(overrides), return_hydra_config=hydra)


# Values a user must supply for these options (their own files); the presets rightly leave them.
USER_VALUES = {
    "data=jsonl": ["data.path=/data/traces.jsonl"],
    "data=openr1": ["data.path=/data/OpenR1-Math-220K/data"],
    "model=local": ["model.path=/ckpt/model"],
    "benchmark=local_jsonl": ["benchmark.path=/data/bench.jsonl"],
    "engine=openai": ["engine.base_urls=[http://localhost:8000/v1]"],
}


def _to_object(app: str, overrides: list[str] = ()):
    """Compose + to_object; mandatory `???` values (e.g. data.path of a user's dataset) get a
    placeholder, since a preset may rightly leave them to the user."""
    overrides = list(overrides)
    for item in list(overrides):
        overrides += USER_VALUES.get(item, [])
    for _ in range(5):
        cfg = _compose(app, overrides)
        try:
            return OmegaConf.to_object(cfg)
        except MissingMandatoryValue as exc:
            overrides.append(f"{exc.full_key}=/placeholder/{exc.full_key}")
    raise AssertionError(f"{app} {overrides}: too many mandatory values")


def _defaults(app: str) -> list:
    return yaml.safe_load((CONF / f"{app}.yaml").read_text()).get("defaults", [])


def _groups(app: str) -> list[str]:
    out = []
    for entry in _defaults(app):
        if isinstance(entry, dict):
            (key, _value), = entry.items()
            key = key.replace("optional ", "").strip()
            if key not in ("experiment",) and (CONF / key).is_dir():
                out.append(key)
    return out


def _preset_apps(preset: str) -> list[str]:
    text = (CONF / "experiment" / f"{preset}.yaml").read_text()
    match = re.search(r"^# apps: (.+)$", text, re.M)
    assert match, f"conf/experiment/{preset}.yaml lacks its '# apps: ...' header line"
    assert text.startswith("# @package _global_"), f"{preset}: must be a _global_ overlay"
    return [a.strip() for a in match.group(1).split(",")]


@pytest.mark.parametrize("app", APPS)
def test_primary_config_composes(app):
    obj = _to_object(app)
    # the schema lives with the stage that owns it; the entry point only registers it
    assert type(obj).__module__.split(".")[1] not in ("cli",), type(obj).__module__
    assert hasattr(obj, "output_root") and hasattr(obj, "tracking")  # architecture contract
    hcfg = _compose(app, hydra=True)
    assert hcfg.hydra.callbacks.tracking._target_ == (
        "vtc_lab.tracking.hydra_callbacks.TrackingCallback")


GROUP_CASES = [(app, group, p.stem) for app in APPS for group in _groups(app)
               for p in sorted((CONF / group).glob("*.yaml"))]


# Combinations an app must refuse, with the message it must give.
REFUSED = {("report", "tracking", "off"): "a report needs a tracking store"}


@pytest.mark.parametrize("app,group,option", GROUP_CASES)
def test_every_group_option_composes(app, group, option):
    if (app, group, option) in REFUSED:
        with pytest.raises(ValueError, match=REFUSED[(app, group, option)]):
            _to_object(app, [f"{group}={option}"])
        return
    obj = _to_object(app, [f"{group}={option}"])
    assert getattr(obj, group) is not None


PRESET_CASES = [(preset, app) for preset in PRESETS for app in _preset_apps(preset)]


@pytest.mark.parametrize("preset,app", PRESET_CASES)
def test_experiment_preset_and_its_sweep_points_compose(preset, app):
    if app not in APPS:
        pytest.fail(f"preset {preset} names app {app!r}, which has no conf/{app}.yaml")
    obj = _to_object(app, [f"experiment={preset}"])
    assert obj.tracking.experiment in (preset, "ablation_system_prompt", "toy", "paper_glyph",
                                       "paper_qwen3_vl", "toy_frontier")
    params = _compose(app, [f"experiment={preset}"], hydra=True).hydra.sweeper.params or {}
    parser = OverridesParser.create()
    for key, spec in params.items():
        override = parser.parse_overrides([f"{key}={spec}"])[0]
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() \
            else [override.get_value_element_as_str()]
        assert len(values) >= 1
        for value in values:
            _to_object(app, [f"experiment={preset}", f"{key}={value}"])


def test_every_preset_is_used_by_some_app_and_documented():
    readmes = " ".join(p.read_text() for p in Path("experiments").glob("*/README.md")) \
        if Path("experiments").is_dir() else ""
    for preset in PRESETS:
        assert _preset_apps(preset)
        assert preset in readmes, f"experiment {preset} is not described in experiments/*/README.md"


@pytest.mark.parametrize("model", ["glyph", "qwen3_vl"])
def test_paper_recipe(model):
    cfg = _to_object("train", [f"experiment=paper_{model}"])
    t, o = cfg.trainer, cfg.optim
    assert (o.lr, o.warmup_ratio, o.max_epochs, o.max_steps) == (1e-5, 0.1, 1, -1)
    assert (o.batch_size, o.grad_accum, t.devices) == (1, 8, 8)
    assert (o.cutoff_len, cfg.model.image_max_pixels) == (32768, 262144)
    assert (t.strategy, t.precision) == ("deepspeed_stage_3", "bf16-true")
    assert cfg.model.source == "pretrained" and cfg.model.trust_remote_code is False
    assert cfg.data.source == "openr1"
    ev = _to_object("eval", [f"experiment=paper_{model}_eval"])
    assert (ev.loop.mode, ev.loop.max_rounds, ev.loop.max_new_tokens) == ("optical", 8, 8192)
    assert (ev.loop.temperature, ev.loop.top_p) == (0.6, 0.95)
    assert ev.model.image_max_pixels == cfg.model.image_max_pixels  # read as trained
    sweep = _compose("eval", [f"experiment=paper_{model}_eval"], hydra=True).hydra.sweeper.params
    assert set(sweep["benchmark"].split(",")) == {"math500", "aime25", "amc23", "gpqa_diamond"}


LAUNCHERS = sorted(p.stem for p in (CONF / "hydra" / "launcher").glob("*.yaml"))


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_launcher_presets_compose_and_target_importable(launcher):
    cfg = _compose("train", [f"hydra/launcher={launcher}"], hydra=True)
    module, _, name = cfg.hydra.launcher._target_.rpartition(".")
    assert hasattr(importlib.import_module(module), name)


@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None,
                    reason="extra `optuna` not installed")
def test_optuna_sweeper_preset():
    cfg = _compose("train", ["hydra/sweeper=bayes"], hydra=True)
    assert cfg.hydra.sweeper.direction == "maximize" and cfg.hydra.sweeper.n_trials >= 1


def test_unknown_field_and_bad_value_are_clear_errors():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="no_such_field"):
        _compose("train", ["trainer.no_such_field=1"])
    with pytest.raises(ConfigCompositionException, match="no_such_option"):
        _compose("train", ["model=no_such_option"])
    with pytest.raises(ValueError, match="tracking.mode"):
        _to_object("train", ["tracking.mode=cloud"])


def _optional_experiment(app: str) -> bool:
    return any(isinstance(e, dict) and "optional experiment" in e for e in _defaults(app))


@pytest.mark.parametrize("app", [
    pytest.param(app, marks=pytest.mark.xfail(
        reason=f"conf/{app}.yaml lists `optional experiment: null`: a misspelt experiment= is "
               f"silently ignored; `experiment: null` (not optional) makes it an error"))
    if _optional_experiment(app) else app for app in APPS])
def test_misspelt_experiment_is_an_error(app):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="no_such_preset"):
        _compose(app, ["experiment=no_such_preset"])


# ---------------------------------------------------------------- presets are deltas

# Each config group's schema (the dataclass its presets fill in) and its default preset.
def _group_schemas() -> dict[str, type]:
    import dataclasses

    out = {}
    for app in APPS:
        obj = _to_object(app)
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value) and (CONF / f.name).is_dir():
                out.setdefault(f.name, type(value))
    return out


def _default_preset(group: str) -> str | None:
    for app in APPS:
        for entry in _defaults(app):
            if isinstance(entry, dict) and group in entry:
                return entry[group]
    return None


def _plain(value):
    import dataclasses

    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _restated(preset: dict, defaults: dict, prefix: str = "") -> list[str]:
    """Keys of `preset` whose value equals the schema default (`name` excepted: it labels)."""
    out = []
    for key, value in preset.items():
        if key in ("defaults", "name") or key not in defaults:
            continue
        if isinstance(value, dict) and isinstance(defaults[key], dict):
            out += _restated(value, defaults[key], f"{prefix}{key}.")
        elif value == defaults[key] or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                        and isinstance(defaults[key], (int, float))
                                        and float(value) == float(defaults[key])):
            out.append(prefix + key)
    return out


GROUPS_WITH_SCHEMAS = ["benchmark", "data", "engine", "evaluator", "loop", "model", "optim",
                      "renderer", "segmentation", "tracking", "trainer"]


@pytest.mark.parametrize("group", [
    pytest.param("model", marks=pytest.mark.xfail(strict=True, reason=(
        "tiny_qwen3_vl lowers Qwen3-VL's image floor to 4,096 px (min_pixels), which must not "
        "become ModelConfig's default: qwen3_vl_8b and glyph keep their processor's own floor"))),
    *[g for g in GROUPS_WITH_SCHEMAS if g != "model"]])
def test_default_preset_equals_the_schema_defaults(group):
    """Each group's default preset, composed alone (no app-level or experiment delta on top),
    is its schema's defaults: the YAML never disagrees with the dataclass."""
    schema = _group_schemas()[group]
    preset = _default_preset(group)
    node = OmegaConf.load(CONF / group / f"{preset}.yaml")
    composed = _plain(OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), node)))
    expected = _plain(schema())
    assert composed == expected, f"conf/{group}/{preset}.yaml disagrees with {schema.__name__}()"


def test_every_group_with_a_schema_is_checked_for_restated_defaults():
    assert sorted(GROUPS_WITH_SCHEMAS) == sorted(_group_schemas())


@pytest.mark.parametrize("group", GROUPS_WITH_SCHEMAS)
def test_presets_restate_no_default(group):
    defaults = _plain(_group_schemas()[group]())
    for path in sorted((CONF / group).glob("*.yaml")):
        preset = yaml.safe_load(path.read_text()) or {}
        assert _restated(preset, defaults) == [], f"{path.name} restates schema defaults"


def test_experiment_presets_set_no_machine_key_to_its_default():
    """An experiment changes what it trains; it does not restate the machine or the recipe."""
    defaults = {g: _plain(_group_schemas()[g]()) for g in ("trainer", "optim")}
    for preset in PRESETS:
        data = yaml.safe_load((CONF / "experiment" / f"{preset}.yaml").read_text()) or {}
        for group in ("trainer", "optim"):
            assert _restated(data.get(group) or {}, defaults[group]) == [], (preset, group)


def test_switching_hardware_changes_only_machine_keys():
    """`trainer=gpu` (or any machine) against `trainer=cpu`: only the trainer group differs,
    never the recipe, the data or the model."""
    import dataclasses

    base = _plain(_to_object("train", ["trainer=cpu"]))
    for machine in sorted(p.stem for p in (CONF / "trainer").glob("*.yaml")):
        other = _plain(_to_object("train", [f"trainer={machine}"]))
        changed = {k for k in base if base[k] != other[k]}
        assert changed <= {"trainer"}, (machine, changed)
    machine_keys = {f.name for f in dataclasses.fields(_group_schemas()["trainer"])}
    recipe_keys = {f.name for f in dataclasses.fields(_group_schemas()["optim"])}
    assert machine_keys & recipe_keys == {"name"}
    gpu = _to_object("train", ["trainer=gpu"])
    assert (gpu.trainer.accelerator, gpu.optim) == ("gpu", _to_object("train").optim)


@pytest.mark.parametrize("preset", ["paper_glyph", "paper_qwen3_vl", "toy", "toy_long"])
def test_full_scale_training_presets_train_on_every_problem(preset):
    """train.yaml limits data to 64 problems for the CPU quick start; a preset meant to train on
    the whole dataset must lift it (the paper presets once trained on 64 OpenR1 problems)."""
    assert _to_object("train", [f"experiment={preset}"]).data.limit is None


def test_one_seed_drives_the_tiny_models_init_in_train_only():
    """`optim.seed` (what `seeds=N` sweeps) also draws the tiny model's random init, so seed
    replicates differ in init, not only in data order; an explicit model.tiny.seed still wins;
    the defaults stay 0/0; eval and serve models keep their own model.tiny.seed."""
    from vtc_lab.cli._seeds import expand_seeds
    from vtc_lab.cli.train import SEED_KEY

    default = _to_object("train")
    assert (default.optim.seed, default.model.tiny.seed) == (0, 0)
    sweep = [a for a in expand_seeds(["experiment=toy", "seeds=3"], SEED_KEY) if a != "-m"]
    key, values = next(a for a in sweep if a.startswith(f"{SEED_KEY}=")).split("=")
    for value in values.split(","):
        point = [a for a in sweep if not a.startswith(f"{key}=")] + [f"{key}={value}"]
        cfg = _to_object("train", point + ["optim.memory=text"])
        assert (cfg.optim.seed, cfg.model.tiny.seed) == (int(value), int(value))
    pinned = _to_object("train", ["optim.seed=2", "model.tiny.seed=5"])
    assert (pinned.optim.seed, pinned.model.tiny.seed) == (2, 5)
    for app in ("eval", "serve"):
        assert _to_object(app).model.tiny.seed == 0, app
    assert _to_object("eval", ["loop.seed=4"]).model.tiny.seed == 0


def test_toy_long_trains_on_its_benchmarks_lengths_under_one_cap():
    """experiment=toy_long trains on the step range of the `toy_long` benchmark it evaluates on,
    and its offline preset applies the training evaluator's cap (issue 23 §5)."""
    from vtc_lab.eval.benchmarks import TOY_LONG_STEPS

    train = _to_object("train", ["experiment=toy_long"])
    assert train.data.toy.step_range == TOY_LONG_STEPS
    assert train.evaluator.benchmarks == ["toy_long"]
    ev = _to_object("eval", ["experiment=toy_long_eval"])
    assert ev.benchmark.name == "toy_long"
    # every setting that decides a greedy loop's outputs, but the policy the eval sweeps
    for key in ("max_rounds", "max_new_tokens", "do_sample", "temperature", "top_p", "top_k",
                "repetition_penalty", "seed", "max_context_tokens", "min_render_tokens"):
        assert getattr(ev.loop, key) == getattr(train.evaluator.loop, key), key
    assert ev.benchmark.limit == train.evaluator.limit
    assert train.evaluator.loop.context_policy == "drop_oldest"
