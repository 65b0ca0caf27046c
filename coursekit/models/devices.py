"""Where a model runs: the device to use, what it does natively, and where a model's inputs go.

* ``get_device()``: CUDA when a GPU is visible, else the CPU. Notebooks call it once and move
  their models there, so the same cells run on a laptop and on Colab's T4.
* ``device_info(device)``: a ``DeviceInfo`` that says whether fp16 and bf16 run in hardware or
  are emulated, which is what decides whether casting to 16 bits is also faster, or only smaller.
* ``model_device(model)``: where a model's inputs must be sent. Not simply "the device of the first
  weight": a model that accelerate spread out or offloaded keeps some weights on ``meta`` and
  computes elsewhere.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["get_device", "DeviceInfo", "device_info", "model_device"]


def get_device() -> torch.device:
    """CUDA if a GPU is visible, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class DeviceInfo:
    """What the current device is and whether it does half precision in hardware.

    On a CPU the answer comes from the CPU's own flags (/proc/cpuinfo): bf16 is native with
    AVX512-BF16 or AMX-BF16, fp16 with AVX512-FP16 or AMX-FP16; otherwise PyTorch emulates them,
    often slower than fp32. On CUDA, fp16 is native; bf16 is native from compute capability 8.0
    (Ampere) on, and emulated on older GPUs such as the T4 (7.5).
    """

    device: torch.device
    name: str
    fp16_native: bool
    bf16_native: bool

    @property
    def summary(self) -> str:
        def word(native):
            return "native" if native else "emulated"
        return (f"{self.device.type}: {self.name} | fp16 {word(self.fp16_native)}, "
                f"bf16 {word(self.bf16_native)}")

    def __str__(self) -> str:
        return self.summary


def device_info(device=None) -> DeviceInfo:
    """Describe ``device`` (default: ``get_device()``)."""
    device = torch.device(device) if device is not None else get_device()
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(idx)
        name = f"{torch.cuda.get_device_name(idx)} (compute capability {major}.{minor})"
        return DeviceInfo(device, name, True, major >= 8)
    from ..kernels import cpu  # the CPU's own flags, without the kernels' layers; None without /proc/cpuinfo
    flags = cpu.cpu_flags() or set()
    return DeviceInfo(device, platform.processor() or platform.machine() or "CPU",
                      fp16_native=bool(flags & {"avx512_fp16", "amx_fp16"}),
                      bf16_native=bool(flags & {"avx512_bf16", "amx_bf16"}))


def model_device(model: nn.Module) -> torch.device:
    """Where a model's inputs must go: where its weights compute.

    Usually the device of its first parameter (quanto's quantized parameters included). A model
    that accelerate spread out or offloaded (``device_map=...``) keeps offloaded weights on the
    ``meta`` device and moves them in on the fly; its inputs go to the execution device of its
    hooks instead.
    """
    for module in model.modules():
        device = _execution_device(module)
        if device is not None:
            return device
    for p in model.parameters():
        if p.device.type != "meta":
            return p.device
    return torch.device("cpu")


def _execution_device(module: nn.Module) -> torch.device | None:
    """Where accelerate runs ``module`` when it dispatched it (device_map, offloading), or None.

    accelerate attaches an ``_hf_hook`` (sometimes a ``SequentialHook`` holding several); the one
    that moves weights in carries ``execution_device``, an int for a CUDA index or a device name.
    """
    hook = getattr(module, "_hf_hook", None)
    for h in [hook, *getattr(hook, "hooks", ())]:
        device = getattr(h, "execution_device", None)
        if device is not None:
            return torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
    return None
