"""The precisions the benchmarks compare, each a function that turns an fp32 model into a variant.

coursekit's layers and optimum-quanto are applied to the same linear layers (every nn.Linear but
the output head, which the small LM ties to its embedding), so their sizes and accuracies compare.
"""

from __future__ import annotations

import copy

import torch

from coursekit import layers


def lm_calibration(tokenizer, n_tokens: int = 1024):
    """A function that runs a language model over n_tokens of training text: what quanto's
    Calibration() needs to record the activation ranges for int8 activations."""
    from coursekit import models
    ids = tokenizer(models.training_text()[:20_000], return_tensors="pt").input_ids[:, :n_tokens]

    def calibrate(model):
        with torch.no_grad():
            for chunk in ids.split(256, dim=1):
                model(chunk)
    return calibrate


def _quanto(weights, activations=None, calibrate=None):
    def build(model):
        from optimum.quanto import Calibration, freeze, quantize
        quantize(model, weights=weights, activations=activations, exclude=["lm_head"])
        if calibrate is not None:
            with Calibration():
                calibrate(model)
        freeze(model)
        return model
    return build


def _coursekit(layer_cls, **kwargs):
    def build(model):
        return layers.replace_linear(model, layer_cls, exclude=("lm_head",), **kwargs)
    return build


def builders(calibrate=None) -> dict:
    """{name: function(model) -> quantized model (in place)}."""
    from optimum.quanto import qint2, qint4, qint8
    return {
        "fp32": lambda m: m,
        "bf16": lambda m: m.to(torch.bfloat16),
        "coursekit W8A16": _coursekit(layers.W8A16Linear),
        "coursekit W4A16 (packed, g64)": _coursekit(layers.W4A16Linear, group_size=64),
        "coursekit W2A16 (packed, g64)": _coursekit(layers.W2A16Linear, group_size=64),
        "optimum-quanto qint8": _quanto(qint8),
        "optimum-quanto qint4": _quanto(qint4),
        "optimum-quanto qint2": _quanto(qint2),
        **({"optimum-quanto qint8 + int8 activations": _quanto(qint8, qint8, calibrate)} if calibrate else {}),
    }


def make(model, name: str, calibrate=None):
    """A deep copy of `model` turned into the variant `name`."""
    return builders(calibrate)[name](copy.deepcopy(model)).eval()
