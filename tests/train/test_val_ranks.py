"""Validation under several ranks: every rank runs the same number of validation batches (FSDP
gathers each layer's shards on every forward, so a rank with one batch more waits forever for
the others), and the padding that evens them out weighs nothing in val/loss.

The real 2-process FSDP run that hung on an uneven split is tests/train/test_fsdp_slow.py::
test_fsdp_validation_split_uneven_across_ranks_does_not_hang."""

from __future__ import annotations

import pytest
import torch

from vtc_lab.data.shards import open_dataset
from vtc_lab.models import ModelConfig, load_backbone
from vtc_lab.train.collate import IGNORE_INDEX, SFTEncoder
from vtc_lab.train.datamodule import SFTDataModule, collate_lists, count_split, is_val_problem
from vtc_lab.train.module import SFTModule

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def backbone():
    return load_backbone(ModelConfig())


def _datamodule(ds, enc, *, batch_size, val_fraction, val_max_samples=64):
    return SFTDataModule(ds, enc, batch_size=batch_size, val_fraction=val_fraction,
                         val_max_samples=val_max_samples, shuffle_buffer=0, num_workers=0, seed=0)


def _val_batches(dm, rank, world):
    pad = dm.encoder.tokenizer.pad_token_id
    batches = []
    for items in dm.val_stream(rank, world):
        seen = {"ids": [i["sample_id"] for i in items], "pads": [bool(i.get("_pad")) for i in items]}
        batches.append(collate_lists([items], pad) | seen)
    return batches


def _odd_split(tmp_path, make_dataset, backbone, *, cutoff_len=2048):
    write, rows_for = make_dataset
    ds = open_dataset(write(tmp_path / "ds", rows_for(12)))
    # a val_fraction whose split is odd, so 2 ranks get different row counts
    fraction = next(f for f in (0.2, 0.25, 0.3, 0.35, 0.4, 0.45)
                    if count_split(ds, f, 0)[1] % 2 and count_split(ds, f, 0)[1] > 2)
    enc = SFTEncoder(backbone.processor, backbone.stop_token_ids, None, cutoff_len=cutoff_len)
    return ds, enc, fraction


def test_an_odd_validation_split_gives_every_rank_the_same_number_of_batches(
        tmp_path, make_dataset, backbone):
    ds, enc, fraction = _odd_split(tmp_path, make_dataset, backbone)
    dm = _datamodule(ds, enc, batch_size=2, val_fraction=fraction)
    n_val = dm.val_samples
    per_rank = [_val_batches(dm, rank, 2) for rank in (0, 1)]
    rows_of_the_longer_rank = (n_val + 1) // 2
    assert len(per_rank[0]) == len(per_rank[1]) == (rows_of_the_longer_rank + 1) // 2
    # every validation sample is seen exactly once; the padding is the only extra
    real = [i for batches in per_rank for b in batches for i, p in zip(b["ids"], b["pads"]) if not p]
    single = [i for b in _val_batches(dm, 0, 1) for i in b["ids"]]
    assert sorted(real) == sorted(single) and len(single) == n_val
    pads = [(b, j) for batches in per_rank for b in batches for j, p in enumerate(b["pads"]) if p]
    assert len(pads) == 1  # n_val odd: one rank is one row short
    for b, j in pads:  # a padding row supervises nothing
        assert bool((b["labels"][j] == IGNORE_INDEX).all())
    for batches in per_rank:
        for b in batches:
            assert int(b["real_samples"]) == b["pads"].count(False)


def test_a_rank_without_a_row_of_its_own_still_runs_the_batches(tmp_path, make_dataset, backbone):
    ds, enc, fraction = _odd_split(tmp_path, make_dataset, backbone)
    dm = _datamodule(ds, enc, batch_size=1, val_fraction=fraction, val_max_samples=1)
    first, second = _val_batches(dm, 0, 2), _val_batches(dm, 1, 2)
    assert len(first) == len(second) == 1
    assert first[0]["pads"] == [False] and second[0]["pads"] == [True]
    assert int(second[0]["real_samples"]) == 0


def test_a_row_the_encoder_drops_is_padded_too(tmp_path, make_dataset, backbone):
    """optim.truncation=drop: a too-long row is dropped on its own rank only; that rank must
    still run as many batches as the others."""
    ds, plain, fraction = _odd_split(tmp_path, make_dataset, backbone)
    rows = [r for r in ds.iter_samples() if is_val_problem(r["problem_id"], fraction, 0)]
    lengths = sorted(len(plain.encode(dict(r))["input_ids"]) for r in rows)
    enc = SFTEncoder(plain.processor, plain.stop_token_ids, None, truncation="drop",
                     cutoff_len=lengths[len(lengths) // 2])  # about half the rows are dropped
    dm = _datamodule(ds, enc, batch_size=2, val_fraction=fraction)
    per_rank = [_val_batches(dm, rank, 2) for rank in (0, 1)]
    assert per_rank[0] and len(per_rank[0]) == len(per_rank[1])
    assert any(p for batches in per_rank for b in batches for p in b["pads"])


def _loss(module, batch):
    with torch.no_grad():
        return float(module.loss({k: v for k, v in batch.items() if torch.is_tensor(v)})[0])


def test_padding_weighs_nothing_in_the_loss(tmp_path, make_dataset, backbone):
    ds, enc, fraction = _odd_split(tmp_path, make_dataset, backbone)
    module = SFTModule(backbone, lr=1e-3).eval()
    only_pad = _datamodule(ds, enc, batch_size=2, val_fraction=fraction, val_max_samples=1)
    (padded,) = _val_batches(only_pad, 1, 2)  # rank 1 holds nothing but padding
    assert padded["pads"] == [True] and _loss(module, padded) == 0.0  # finite, not 0/0 = nan
    # three rows over two ranks: rank 1 has row 1 and a padding row in one batch; its loss is
    # row 1's alone (padding tokens count neither in the sum nor in the mean)
    dm = _datamodule(ds, enc, batch_size=2, val_fraction=fraction, val_max_samples=3)
    (mixed,) = _val_batches(dm, 1, 2)
    assert mixed["pads"] == [False, True]
    alone = _datamodule(ds, enc, batch_size=1, val_fraction=fraction, val_max_samples=3)
    row_1 = _val_batches(alone, 0, 1)[1]
    assert row_1["ids"] == mixed["ids"][:1]
    assert _loss(module, row_1) > 0
    assert _loss(module, mixed) == pytest.approx(_loss(module, row_1), rel=1e-5)
