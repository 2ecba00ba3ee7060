"""The private APIs of other libraries, each behind one shim (issue 22 §7): every one still
exists in the installed versions, those versions are the verified ones (an upgrade fails here
until each shim is re-checked), and the transformers shims do what their docstrings say on
both tiny architectures."""

from __future__ import annotations

import logging

import pytest
import torch

from vtc_lab import compat
from vtc_lab.compat import PRIVATE, Private, is_verified, private


@pytest.mark.parametrize("name", sorted(PRIVATE))
def test_each_private_api_exists_in_a_verified_version(name):
    entry = PRIVATE[name]
    assert is_verified(entry), f"{entry.package} left {entry.verified}: re-check {entry.shim}"
    assert private(name) is not None
    assert entry.buys and entry.shim.startswith("vtc_lab.")


def test_a_vanished_private_api_is_one_clear_error(monkeypatch, caplog):
    gone = Private("gone", "torch", "<1", "torch.distributed.checkpoint", "_no_such_loader",
                   "vtc_lab.models.checkpoint.sharded_weights", "nothing")
    monkeypatch.setitem(PRIVATE, "gone", gone)
    compat._warn_unverified.cache_clear()
    with caplog.at_level(logging.WARNING, logger="vtc_lab.compat"):
        with pytest.raises(ImportError, match=r"sharded_weights needs torch\.distributed\."
                                              r"checkpoint\._no_such_loader \(torch <1 has it"):
            private("gone")
    assert "verified with torch <1" in caplog.text  # outside the verified range: said once


@pytest.fixture(scope="module", params=["tiny_qwen3_vl", "tiny_glm4v"])
def backbone(request):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import vtc_lab.cli.train  # noqa: F401 - registers train_schema
    from vtc_lab.cli._hydra import CONF_DIR
    from vtc_lab.models import load_backbone

    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = OmegaConf.to_object(compose("train", overrides=[f"model={request.param}"]))
    return load_backbone(cfg.model)


def test_vision_tower_and_its_tokens(backbone):
    from vtc_lab.models.internals import vision_tokens, vision_tower

    spec = backbone.vision_spec
    m = spec.merge_size
    grid = torch.tensor([[1, 2 * m, 3 * m]])  # 6 merged tokens
    pixels = torch.randn(int(grid.prod()), 3 * spec.temporal_patch_size * spec.patch_size ** 2)
    with torch.no_grad():
        tokens = vision_tokens(vision_tower(backbone.model)(pixels, grid_thw=grid))
        features = backbone.model.get_image_features(pixels, grid, return_dict=True).pooler_output
    hidden = backbone.model.config.text_config.hidden_size
    assert tokens.shape == (6, hidden)  # what the language model receives, one row per token
    assert torch.equal(tokens, features[0])  # the same tokens the public API returns


def test_rope_deltas_are_cached_by_generate_and_reset(backbone):
    from vtc_lab.models.internals import reset_rope_deltas

    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        backbone.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                max_new_tokens=2, do_sample=False)
    assert backbone.model.model.rope_deltas is not None  # cached: what the shim exists for
    reset_rope_deltas(backbone.model)
    assert backbone.model.model.rope_deltas is None
