"""SFTModule: schedule, a real optimisation step, DDP-safe image-less batches, data split/resume."""

from __future__ import annotations

import math

import pytest
import torch

from vtc_lab.data.shards import open_dataset
from vtc_lab.models import ModelConfig, load_backbone
from vtc_lab.train.collate import SFTEncoder, collate
from vtc_lab.train.datamodule import SFTStream, count_split, is_val_problem
from vtc_lab.train.module import SFTModule, warmup_cosine

torch.set_num_threads(1)


def test_warmup_then_cosine():
    total, warm = 100, 10
    lrs = [warmup_cosine(s, total, warm, 0.1) for s in range(total + 1)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:10]))          # rising during warmup
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))           # then falling
    assert lrs[total] == pytest.approx(0.1)
    assert lrs[55] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))


@pytest.fixture(scope="module")
def backbone():
    """One tiny backbone shared by the read-only tests; a test that steps an optimiser builds its
    own. Teardown checks that no test changed the shared weights."""
    bb = load_backbone(ModelConfig())
    before = {n: p.detach().clone() for n, p in bb.model.named_parameters()}
    yield bb
    changed = [n for n, p in bb.model.named_parameters() if not torch.equal(before[n], p)]
    assert not changed, f"a test changed the shared backbone's weights: {changed[:3]}"


def _batch(bb, rows):
    enc = SFTEncoder(bb.processor, bb.stop_token_ids, None, cutoff_len=2048)
    return collate([enc.encode(r) for r in rows], bb.tokenizer.pad_token_id)


def test_step_changes_weights_and_imageless_batch_reaches_vision_tower(make_png):
    backbone = load_backbone(ModelConfig())  # its own: the optimiser step changes the weights
    module = SFTModule(backbone, lr=1e-2, total_steps=10)
    rows = [{"sample_id": "a", "question": "1+1?", "target": "2</think>\n<answer>2</answer>", "images": []}]
    batch = _batch(backbone, rows)
    assert "pixel_values" not in batch
    module.train()
    loss, parts = module.loss(batch)
    assert torch.isfinite(loss)
    loss.backward()
    visual = backbone.model.model.visual
    # every trainable vision parameter got a (zero) gradient: DDP's all-reduce cannot hang
    grads = [p.grad for p in visual.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
    assert all(float(g.abs().sum()) == 0.0 for g in grads)
    before = {n: p.detach().clone() for n, p in backbone.model.named_parameters()}
    opt = torch.optim.AdamW(backbone.model.parameters(), lr=1e-2)
    opt.step()
    changed = [n for n, p in backbone.model.named_parameters() if not torch.equal(before[n], p)]
    assert any("language_model" in n for n in changed)


def test_images_train_the_vision_tower(backbone, make_png):
    module = SFTModule(backbone, lr=1e-2, total_steps=10)
    rows = [{"sample_id": "a", "question": "1+1?", "target": "2", "images": [make_png("1+1=2")]}]
    backbone.model.zero_grad(set_to_none=True)
    loss, _ = module.loss(_batch(backbone, rows))
    loss.backward()
    grads = [p.grad for n, p in backbone.model.named_parameters() if "visual" in n]
    assert any(g is not None and float(g.abs().sum()) > 0 for g in grads)


def test_checkpoint_from_another_model_config_is_refused(backbone):
    module = SFTModule(backbone, lr=1e-3, model_signature={"arch": "qwen3_vl", "tiny": {"hidden_size": 128}})
    ckpt: dict = {}
    module.on_save_checkpoint(ckpt)
    module.on_load_checkpoint(ckpt)  # same config: fine
    other = SFTModule(backbone, lr=1e-3, model_signature={"arch": "qwen3_vl", "tiny": {"hidden_size": 64}})
    with pytest.raises(ValueError, match="different model config.*tiny"):
        other.on_load_checkpoint(ckpt)


def test_split_is_by_problem_and_streams_resume(tmp_path, make_dataset, backbone):
    write, rows_for = make_dataset
    ds = open_dataset(write(tmp_path / "ds", rows_for(20)))
    train_n, val_n = count_split(ds, 0.3, seed=0)
    assert train_n + val_n == ds.num_samples and val_n > 0
    sides: dict[str, set] = {}
    for r in ds.iter_samples(columns=["problem_id"]):
        sides.setdefault(r["problem_id"], set()).add(is_val_problem(r["problem_id"], 0.3, 0))
    assert all(len(s) == 1 for s in sides.values())  # no problem on both sides
    enc = SFTEncoder(backbone.processor, backbone.stop_token_ids, None, cutoff_len=2048)

    def ids(start=None, n=4):
        stream = SFTStream(ds, enc, split="train", val_fraction=0.3, seed=0, batch_size=2,
                           shuffle_buffer=8, endless=True, start_positions=start)
        out, last = [], None
        for batch in stream:
            last = batch[0].get("_position")
            out.append([b["sample_id"] for b in batch])
            if len(out) == n:
                return out, last
    first, pos = ids(n=3)
    rest, _ = ids(n=2)[0], None
    full, _ = ids(n=5)
    resumed, _ = ids(start={pos[0]: pos[1]}, n=2)
    assert first == full[:3] and resumed == full[3:5]  # resume continues exactly after
    assert rest == full[:2]


def test_loss_on_kept_positions_equals_full_logits_loss(backbone, make_png):
    import torch.nn.functional as F

    rows = [{"sample_id": "a", "question": "q", "target": "hello world 123", "images": [make_png("m")]},
            {"sample_id": "b", "question": "a longer question here", "target": "x", "images": []}]
    batch = _batch(backbone, rows)
    module = SFTModule(backbone, lr=1e-3)
    module.eval()
    with torch.no_grad():
        loss, _ = module.loss(batch)
        out = backbone.model(**{k: batch[k] for k in ("input_ids", "attention_mask", "mm_token_type_ids",
                                                      "pixel_values", "image_grid_thw")})
        ref = F.cross_entropy(out.logits[:, :-1].reshape(-1, out.logits.size(-1)),
                              batch["labels"][:, 1:].reshape(-1), ignore_index=-100)
    assert float(loss) == pytest.approx(float(ref), rel=1e-5)


def test_empty_dataset_is_a_clear_error(tmp_path, make_dataset, backbone):
    from vtc_lab.train.datamodule import SFTDataModule

    write, _ = make_dataset
    ds = open_dataset(write(tmp_path / "empty", []))
    enc = SFTEncoder(backbone.processor, backbone.stop_token_ids, None)
    with pytest.raises(ValueError, match="no training samples"):
        SFTDataModule(ds, enc, batch_size=2, val_fraction=0.1, val_max_samples=4,
                      shuffle_buffer=0, num_workers=0, seed=0)


def test_unknown_backbone_name_is_refused():
    from hydra import compose, initialize_config_dir
    from hydra.errors import MissingConfigException

    from vtc_lab.cli._hydra import CONF_DIR

    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        with pytest.raises(MissingConfigException, match="model/llava_13b"):
            compose("train", overrides=["model=llava_13b"])


def test_lora_step_trains_adapters_and_vision_only(make_png):
    pytest.importorskip("peft")
    bb = load_backbone(ModelConfig(lora_rank=4))
    module = SFTModule(bb, lr=1e-2, total_steps=4)
    module.train()
    rows = [{"sample_id": "a", "question": "1+1?", "target": "2", "images": []}]
    loss, _ = module.loss(_batch(bb, rows))
    loss.backward()  # an image-less batch: the zero-weighted vision pass must work under peft too
    opt = module.configure_optimizers()["optimizer"]
    before = {n: p.detach().clone() for n, p in bb.model.named_parameters()}
    opt.step()
    changed = {n for n, p in bb.model.named_parameters() if not torch.equal(before[n], p)}
    assert changed and all("lora_" in n for n in changed)  # vision got zero grads: Adam leaves it


def test_more_consumers_than_samples_is_an_error_not_a_hang(tmp_path, make_dataset, backbone):
    write, rows_for = make_dataset
    ds = open_dataset(write(tmp_path / "one", rows_for(1, segments=1)))
    enc = SFTEncoder(backbone.processor, backbone.stop_token_ids, None)
    stream = SFTStream(ds, enc, split="train", val_fraction=0.0, seed=0, batch_size=1,
                       endless=True, rank=1, world_size=2)
    with pytest.raises(ValueError, match="fewer samples than consumers"):
        next(iter(stream))


def test_gradient_checkpointing_gives_the_same_gradients(make_png):
    rows = [{"sample_id": "a", "question": "q", "target": "hello", "images": [make_png("x")]}]
    grads = []
    for checkpointing in (False, True):
        bb = load_backbone(ModelConfig(gradient_checkpointing=checkpointing))
        module = SFTModule(bb, lr=1e-3)
        module.train()
        loss, _ = module.loss(_batch(bb, rows))
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in bb.model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-5), name
