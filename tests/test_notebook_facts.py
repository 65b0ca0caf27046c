"""Claims in the masters' prose that code can check (each one was once wrong)."""
import re
from pathlib import Path

import nbformat
import torch

ROOT = Path(__file__).resolve().parents[1]


def _cells(name):
    return nbformat.read(ROOT / "notebooks" / name, as_version=4).cells


def test_06_quantizes_symmetrically_until_the_clipping_section():
    """06 says weights are symmetric until the clipping section: every quantize call before it says so."""
    cells = _cells("06_granularity.ipynb")
    first = next(c for c in cells if c.cell_type == "markdown" and "symmetric" in c.source)
    assert "Until the clipping section" in first.source
    end = next(i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith("## Refining"))
    calls = 0
    for cell in cells[:end]:
        if cell.cell_type != "code":
            continue
        for line in cell.source.splitlines():
            if re.search(r"quant\.quantize\(|plot_error_vs_granularity\(", line):
                calls += 1
                assert re.search(r"symmetric=True|\"symmetric\": True", line), line
    assert calls >= 5


def test_bf16_relative_rounding_error_is_2_to_the_minus_8_wherever_stated():
    """bf16 has 8 significant bits (7 stored): round to nearest moves a value by at most 2^-8 of it."""
    half_eps = torch.finfo(torch.bfloat16).eps / 2
    assert half_eps == 2.0 ** -8
    for path in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "markdown":
                assert "2⁻⁹" not in cell.source, path.name
                assert "8 bits of mantissa" not in cell.source, path.name


def test_fits_rule_is_the_same_in_01_and_04():
    """01's table and exercise and 04's table use one rule: weights at most 80 % of the GPU."""
    from coursekit import memory
    from coursekit.exercises.nb01_data_types import WEIGHT_SHARE
    assert memory.WEIGHT_SHARE == WEIGHT_SHARE == 0.8
    out = "".join(o.get("text", "") for c in _cells("01_data_types.ipynb") if c.cell_type == "code"
                  for o in c.outputs)
    assert re.search(r"fp16\s+2\s+14\.00 GB\s+no", out)


def test_12_k_quant_layouts_are_gguf_s():
    """12's going-further names the k-quants' layouts: read them off gguf's own sizes and dequantizer."""
    import numpy as np
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as T
    from gguf.quants import dequantize

    text = "\n".join(c.source for c in _cells("12_number_formats.ipynb") if c.cell_type == "markdown")
    assert "Q6_K has 16 blocks of 16 with 8-bit scales\n  (6.5625 bits per weight)" in text
    assert "Q4_K has 8 blocks of 32\n  with 6-bit scales and minimums (4.5 bits per weight)" in text
    (q6_weights, q6_bytes), (q4_weights, q4_bytes) = GGML_QUANT_SIZES[T.Q6_K], GGML_QUANT_SIZES[T.Q4_K]
    assert (q6_weights, q6_bytes * 8 / q6_weights) == (256, 6.5625)
    assert (q4_weights, q4_bytes * 8 / q4_weights) == (256, 4.5)
    # Q6_K: low 4 bits (128 B), high 2 bits (64 B), 16 int8 scales, one fp16 super-scale
    assert q6_bytes == 128 + 64 + 16 + 2
    scales = np.arange(1, 17, dtype=np.int8)
    block = np.concatenate([np.zeros(192, np.uint8), scales.view(np.uint8), np.array([1.0], np.float16).view(np.uint8)])
    values = dequantize(block.reshape(1, -1), T.Q6_K).reshape(16, 16)       # all codes 0: value -32 * scale
    assert (values == (-32.0 * scales.astype(np.float32))[:, None]).all()   # 16 runs of 16, one 8-bit scale each
    # Q4_K: fp16 d and dmin, 12 bytes holding 8 six-bit scales and 8 six-bit minimums, 128 B of 4-bit codes
    assert q4_bytes == 2 + 2 + 12 + 128 and 12 * 8 == 8 * 6 + 8 * 6


def test_12_names_llama_quantize_for_the_q6_k_output_matrix():
    text = "\n".join(c.source for c in _cells("12_number_formats.ipynb") if c.cell_type == "markdown")
    assert "llama.cpp's own converter usually keeps the output matrix" not in text
    assert "`llama-quantize`" in text and "Q6_K" in text
