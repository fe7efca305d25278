"""Where a stage runs: the device (``train.accelerator``) and training's scale.

Evaluate, robustness and predict only need a torch device name, which comes without
importing Lightning (2.4 s of start-up for each of 13 demo stages); only ``trainer_scale``
and ``launched_externally`` import it, for training.
"""

from __future__ import annotations

from typing import Any

import torch

from config.errors import ParamsError


def resolve_accelerator(choice: str) -> str:
    """'auto' → 'gpu' when CUDA is present, else 'cpu'; an explicit 'gpu' must exist."""
    if choice == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if choice == "gpu" and not torch.cuda.is_available():
        raise ParamsError("train.accelerator: 'gpu' requested but no CUDA device is visible")
    return choice


def torch_device(choice: str) -> str:
    """The torch device of ``train.accelerator``: ``cuda`` or ``cpu``."""
    return "cuda" if resolve_accelerator(choice) == "gpu" else "cpu"


def scale_of(train: Any) -> dict[str, Any]:
    """What of ``train.*`` makes a run other than one fp32 process: the processes and the
    precision, only where not the default (the checkpoint hash and the progress line)."""
    processes = train.devices * train.num_nodes
    return {k: v for k, v in (("processes", processes), ("precision", train.precision))
            if v not in (1, "32-true")}


def launched_externally() -> bool:
    """Whether this process is one of several a launcher started (torchrun, srun): then
    Lightning joins them instead of starting its own."""
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    return TorchElasticEnvironment.detect() or SLURMEnvironment.detect()


def trainer_scale(train: Any, accelerator: str) -> dict[str, Any]:
    """Lightning Trainer arguments for ``train.devices / num_nodes / strategy / precision``.

    ``strategy: ddp`` on one machine starts its processes itself (spawned: the stage's own
    command cannot be re-run per process); under torchrun or srun, which start one process
    per device on every node, it joins theirs. The backend is NCCL on GPUs, gloo on CPUs.
    """
    gpu = accelerator == "gpu"
    if train.precision == "16-mixed" and not gpu:
        raise ParamsError("train.precision: '16-mixed' needs a CUDA GPU (fp16 autocast); on "
                          "CPU use 'bf16-mixed'")
    if gpu and train.devices > torch.cuda.device_count():
        raise ParamsError(f"train.devices: {train.devices} GPUs asked for, "
                          f"{torch.cuda.device_count()} visible")
    strategy: Any = "auto"
    if train.strategy == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        external = launched_externally()
        if train.num_nodes > 1 and not external:
            raise ParamsError(
                f"train.num_nodes: {train.num_nodes} machines need a launcher that starts this "
                "command on each (srun, or torchrun --nnodes); see docs/scaling.md")
        if not external:
            # The spawned processes receive the model and the loaders pickled; torch's default
            # way of sharing their tensors (one file descriptor each) fails there ("bad
            # value(s) in fds_to_keep" when a storage is sent twice); shared-memory files do not.
            torch.multiprocessing.set_sharing_strategy("file_system")
        strategy = DDPStrategy(process_group_backend="nccl" if gpu else "gloo",
                               start_method="popen" if external else "spawn")
    return {"devices": train.devices, "num_nodes": train.num_nodes, "strategy": strategy,
            "precision": train.precision}
