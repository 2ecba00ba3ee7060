"""Training throughput of the tiny backbones on CPU: samples/s, tokens/s, the data side's
(decode + processor + tokenize) share of step time, and peak memory.

    python experiments/perf/train_throughput.py [--dataset DIR] [--steps 10] [--threads 2] [--device cuda]

Measured side by side in one process on the same batches: `encode` = SFTEncoder.encode for
every sample of a batch + collate; `step` = forward + backward + AdamW step on that batch.
Without --dataset a small dataset is built with the real builder (MATH500 fixture, 24 problems,
segmentation=small) under a temp dir.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch


def build_fixture(root: Path) -> Path:
    from vtc_lab.data.config import BuildDataConfig
    from vtc_lab.data.build import ensure_dataset
    from vtc_lab.data.config import DataConfig
    from vtc_lab.models import ModelConfig
    from vtc_lab.segment import SegmentationConfig
    from vtc_lab.tracking.config import TrackingConfig

    cfg = BuildDataConfig(data=DataConfig(limit=24), output_root=str(root),
                          segmentation=SegmentationConfig(policy="boundary", max_tokens=96, min_tokens=16,
                                                          max_segments=8, on_overflow="merge"),
                          model=ModelConfig(), tracking=TrackingConfig(mode="off"), progress=False)
    return ensure_dataset(cfg)


def _to(batch: dict, device: str) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


def measure(arch: str, dataset_dir: Path, steps: int, batch_size: int, device: str = "cpu") -> dict:
    from vtc_lab.data.shards import open_dataset
    from vtc_lab.models import ModelConfig, TinySpec, get_backbone, load_backbone
    from vtc_lab.train.collate import SFTEncoder, collate
    from vtc_lab.train.module import SFTModule

    ds = open_dataset(dataset_dir)
    bb = load_backbone(ModelConfig(name=f"tiny_{arch}", arch=arch,
                                   tiny=TinySpec(patch_size=get_backbone(arch).vision.patch_size)))
    enc = SFTEncoder(bb.processor, bb.stop_token_ids, ds.system_prompt, ds.image_position,
                     cutoff_len=2048, image_max_pixels=262144)
    module = SFTModule(bb, lr=1e-3, total_steps=steps).to(device)
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-3)
    rows = ds.iter_samples()
    t_enc = t_step = 0.0
    samples = tokens = vision = 0
    for step in range(steps + 1):  # step 0 warms up (allocator, kernels) and is not counted
        t0 = time.perf_counter()
        items = []
        while len(items) < batch_size:
            row = next(rows, None)
            if row is None:
                rows = ds.iter_samples()
                continue
            item = enc.encode(row)
            if item is not None:
                items.append(item)
        batch = _to(collate(items, bb.tokenizer.pad_token_id), device)
        t1 = time.perf_counter()
        # bf16 autocast on CUDA = the gpu preset's bf16-mixed; float32 on CPU = the cpu preset
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
            loss, _ = module.loss(batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        if step:
            t_enc += t1 - t0
            t_step += t2 - t1
            samples += len(items)
            tokens += int(batch["attention_mask"].sum())
            vision += int((batch["input_ids"] == bb.model.config.image_token_id).sum())
    total = t_enc + t_step
    return {"arch": arch, "samples/s": samples / total, "tokens/s": tokens / total,
            "tokens/sample": tokens / samples, "vision tokens/sample": vision / samples,
            "encode ms/batch": 1000 * t_enc / steps, "step ms/batch": 1000 * t_step / steps,
            "encode share": t_enc / total,
            "peak RSS MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            **({"peak GPU MiB": torch.cuda.max_memory_allocated() / 2**20} if device == "cuda" else {}),
            "final loss": float(loss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--archs", default="qwen3_vl,glm4v")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.dataset or build_fixture(Path(tmp))
        for arch in args.archs.split(","):
            r = measure(arch, dataset, args.steps, args.batch_size, args.device)
            print(" | ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()),
                  flush=True)


if __name__ == "__main__":
    main()
