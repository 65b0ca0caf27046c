"""Post-training quantization beyond round-to-nearest: one short module per method.

    calibrate(model, tokenizer, texts) -> Calibration     calibration.py  input statistics of every linear layer
    rtn(model, bits, group_size)                          rtn.py          the baseline
    llm_int8(model, threshold)                            llm_int8.py     outlier channels kept in float
    smoothquant(model, calibration, alpha)                smoothquant.py  outliers moved into the weights, W8A8
    awq(model, calibration, bits, group_size)             awq.py          scale the columns that matter, then RTN
    gptq(model, calibration, bits, group_size)            gptq.py         round column by column, compensate
                                                          sequential.py   ... block by block, on quantized inputs
    gptq_gguf(model, calibration, fmt) -> {name: Encoded} gguf_gptq.py    ... onto GGUF's blocks, for the file
    sensitivity.sweep(model, tokenizer, slices, quantized)  sensitivity.py  which blocks to keep in float

Each method but ``gptq_gguf`` (which returns the blocks a GGUF file stores) changes ``model`` in place and returns it, with its weights in coursekit's own
quantized layers (``PackedLinear``, ``W8A8Linear``, ``Int8OutlierLinear``), so
``coursekit.memory.model_nbytes`` counts what is really stored. ``scaling.py`` holds the identity
SmoothQuant and AWQ share; ``grid.py`` the weight grid of RTN, AWQ and GPTQ.
"""

from .act_layers import InputScaled, W8A8Linear
from .awq import awq
from .calibration import Calibration, calibrate
from .gguf_gptq import gptq_gguf, gptq_weight_gguf
from .gptq import gptq, gptq_weight
from .llm_int8 import Int8OutlierLinear, llm_int8, outlier_split_matmul
from .rtn import rtn, rtn_layer
from .smoothquant import smooth, smoothing_scales, smoothquant, w8a8

__all__ = ["calibrate", "Calibration", "rtn", "rtn_layer", "llm_int8", "outlier_split_matmul",
           "Int8OutlierLinear", "smooth", "smoothing_scales", "smoothquant", "w8a8", "W8A8Linear",
           "InputScaled", "awq", "gptq", "gptq_weight", "gptq_gguf", "gptq_weight_gguf"]
