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
