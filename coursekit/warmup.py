"""Warm optimum-quanto once, so no notebook pays for it.

The first 4-bit forward pass of optimum-quanto compiles a C++ extension (40–80 s on a laptop).
`make lab` and `make test` run this module; after the first time it only loads the cached build
(a few seconds).
"""

import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def warm() -> float:
    """Run one tiny qint4 forward pass (compiling quanto's extension if needed); return seconds."""
    import torch
    from optimum.quanto import freeze, qint4, quantize

    start = time.perf_counter()
    layer = torch.nn.Sequential(torch.nn.Linear(128, 128))
    quantize(layer, weights=qint4)
    freeze(layer)
    with torch.no_grad():
        layer(torch.randn(2, 128))
    return time.perf_counter() - start


if __name__ == "__main__":
    seconds = warm()
    if seconds > 5:
        print(f"optimum-quanto warmed up in {seconds:.0f} s (a one-time compile)")
