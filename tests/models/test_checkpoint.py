"""The one loader of `vtc-lab train` checkpoints (eval `checkpoint=`, export of sharded runs)."""

from __future__ import annotations

import pytest
import torch

from vtc_lab.models import ModelConfig, load_backbone
from vtc_lab.models.checkpoint import load_checkpoint_weights


def test_lightning_checkpoint_weights_are_loaded_whatever_the_prefix(tmp_path):
    trained = load_backbone(ModelConfig()).model
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.5)
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in trained.state_dict().items()}
                | {"char_head.weight": torch.zeros(2)}, "epoch": 1}, ckpt)
    fresh = load_backbone(ModelConfig()).model
    load_checkpoint_weights(fresh, str(ckpt))
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(),
                                                  trained.state_dict().values()))
    torch.save({"state_dict": {"other.weight": torch.zeros(2)}}, ckpt)
    with pytest.raises(ValueError, match="does not hold this model's weights"):
        load_checkpoint_weights(fresh, str(ckpt))


class _Tied(torch.nn.Module):
    """A language-model head tied to the input embeddings, like most small Qwen checkpoints."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(5, 3)
        self.norm = torch.nn.LayerNorm(3)
        self.lm_head = torch.nn.Linear(3, 5, bias=False)
        self.lm_head.weight = self.embed.weight


def test_a_tied_weight_may_be_stored_once_but_a_real_weight_may_not_be_missing(tmp_path):
    trained = _Tied()
    with torch.no_grad():
        trained.embed.weight.add_(1.0)
        trained.norm.weight.mul_(3.0)
    state = {f"model.{k}": v.clone() for k, v in trained.state_dict().items()}
    del state["model.lm_head.weight"]  # a consolidated (DeepSpeed) checkpoint keeps one copy
    ckpt = tmp_path / "consolidated.pt"
    torch.save({"state_dict": state}, ckpt)
    fresh = _Tied()
    load_checkpoint_weights(fresh, ckpt)
    assert torch.equal(fresh.embed.weight, trained.embed.weight)
    assert torch.equal(fresh.lm_head.weight, trained.embed.weight)  # still tied, so loaded too
    assert torch.equal(fresh.norm.weight, trained.norm.weight)

    del state["model.norm.weight"]
    torch.save({"state_dict": state}, ckpt)
    with pytest.raises(ValueError, match="does not hold this model's weights.*'norm.weight'"):
        load_checkpoint_weights(_Tied(), ckpt)


@pytest.mark.parametrize("damage", ["empty", "garbage", "truncated", "flipped"])
def test_a_damaged_checkpoint_is_named_with_the_reason(tmp_path, damage):
    """`vtc-lab eval checkpoint=<bad file>` ends in one message naming the file, not in an
    EOFError / UnpicklingError / miniz traceback."""
    from vtc_lab.models.checkpoint import CheckpointError

    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"model.w": torch.arange(4096.0)}}, good)
    data = good.read_bytes()
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes({"empty": b"", "garbage": b"not a checkpoint at all" * 10,
                     "truncated": data[: len(data) // 2],
                     "flipped": data[:2000] + bytes([data[2000] ^ 0xFF]) + data[2001:]}[damage])
    with pytest.raises(CheckpointError, match=r"bad\.ckpt (is not a readable|could not be loaded)"):
        load_checkpoint_weights(_Tied(), bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint_weights(_Tied(), tmp_path / "missing.ckpt")


def test_a_sharded_checkpoint_directory_is_read_as_full_weights(tmp_path):
    """FSDP's sharded `last.ckpt` is a torch.distributed.checkpoint directory: the loader reads
    the model weights from it (not the optimizer state also stored there)."""
    import torch.distributed.checkpoint as dcp

    from vtc_lab.models.checkpoint import is_sharded_checkpoint

    trained = _Tied()
    with torch.no_grad():
        trained.embed.weight.add_(2.0)
        trained.norm.bias.add_(1.0)
    state = {"model": {f"model.{k}": v.clone() for k, v in trained.state_dict().items()},
             "optimizer_0": {"state": {"step": torch.tensor(3.0)}}}
    ckpt = tmp_path / "last.ckpt"
    dcp.save(state, storage_writer=dcp.FileSystemWriter(str(ckpt)), no_dist=True)
    assert is_sharded_checkpoint(ckpt) and not is_sharded_checkpoint(tmp_path)
    fresh = _Tied()
    load_checkpoint_weights(fresh, ckpt)
    for name, tensor in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor), name
