"""The Lightning strategy object of `trainer.strategy` (DDP, FSDP on GPU or CPU, DeepSpeed)."""

from __future__ import annotations

from typing import Any

def cpu_fsdp_strategy(**kwargs) -> Any:
    """An FSDPStrategy for CPU processes (gloo); the one user of Lightning's private
    `FSDPStrategy._setup_model` (vtc_lab.compat.PRIVATE says what it buys and which Lightning
    versions it was verified with; tests/train/test_fsdp_slow.py runs it). Lightning 2.6's Trainer refuses
    `strategy=FSDPStrategy(...)` with `accelerator='cpu'` ("The strategy `fsdp` requires a GPU
    accelerator"), a check on the exact class only (lifting it: Lightning-AI/pytorch-lightning
    #21812); torch's FSDP itself shards over gloo on the CPU once given a CPU `device_id`. The
    subclass changes only that wrapping: the 2-process CPU run (trainer=fsdp_cpu) exercises the
    same sharding, sharded checkpoints, resume and export as a GPU run."""
    from lightning.pytorch.strategies import FSDPStrategy

    from vtc_lab.compat import private

    private("lightning.FSDPStrategy._setup_model")  # gone or unverified: said here, once

    class CPUFSDPStrategy(FSDPStrategy):
        def _setup_model(self, model):
            # Lightning passes device_id=root_device.index (None on the CPU), and torch's FSDP
            # then looks for an accelerator ("FSDP needs a non-CPU accelerator device"); an
            # explicit CPU device_id is what it accepts. Wrapped here, Lightning's own
            # _setup_model keeps the wrapping and adds activation checkpointing as usual.
            import torch
            from torch.distributed.fsdp import FullyShardedDataParallel

            if not any(isinstance(m, FullyShardedDataParallel) for m in model.modules()):
                kwargs = dict(self.kwargs)
                self.kwargs.pop("auto_wrap_policy", None)
                model = FullyShardedDataParallel(
                    module=model, cpu_offload=self.cpu_offload,
                    mixed_precision=self.mixed_precision_config,
                    sharding_strategy=self.sharding_strategy, device_id=torch.device("cpu"),
                    **kwargs)
            return super()._setup_model(model)

    return CPUFSDPStrategy(**kwargs)


def build_strategy(tc, model) -> Any:
    """Lightning strategy object for the `trainer.strategy` name."""
    if tc.strategy == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(process_group_backend=tc.process_group_backend,
                           find_unused_parameters=False)
    if tc.strategy == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy

        layers = {type(m) for name, m in model.named_modules()
                  if type(m).__name__.endswith(("DecoderLayer", "VisionBlock"))}
        # Sharded checkpoints (torch.distributed.checkpoint: one file per rank, no gather onto
        # rank 0). They also avoid Lightning 2.6's full-state-dict path, which sets
        # offload_to_cpu=True and crashes (SIGSEGV, use-after-free) when the shards live on
        # the CPU (Lightning-AI/pytorch-lightning#21804).
        kwargs = dict(auto_wrap_policy=layers, sharding_strategy="FULL_SHARD",
                      state_dict_type="sharded", process_group_backend=tc.process_group_backend)
        if tc.accelerator == "cpu":
            return cpu_fsdp_strategy(**kwargs)
        return FSDPStrategy(**kwargs)
    if tc.strategy.startswith("deepspeed"):
        try:
            import deepspeed  # noqa: F401
        except ImportError as exc:
            raise ImportError(f"trainer.strategy={tc.strategy} needs DeepSpeed: "
                              f"pip install 'vtc-lab[deepspeed]'") from exc
    return tc.strategy
