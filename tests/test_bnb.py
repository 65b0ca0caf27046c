"""bitsandbytes loading of the course LM on the CPU, and model_nbytes' exact count of it."""
import pytest
import torch

import coursekit.formats as F
import coursekit.models as M
from coursekit.bnb import load_lm_bitsandbytes, quiet_bitsandbytes
from coursekit.memory import model_nbytes

quiet_bitsandbytes()                    # before bitsandbytes' first import logs its CPU kernel notice
pytest.importorskip("bitsandbytes")


def _linears(model):
    return [m for n, m in model.named_modules() if n.startswith("model.layers.") and hasattr(m, "weight")
            and m.weight.dim() == 2]


def test_int8_size_counts_the_row_scales(capfd):
    model, tok = load_lm_bitsandbytes("int8")
    import bitsandbytes as bnb
    lins = _linears(model)
    assert lins and all(isinstance(m, bnb.nn.Linear8bitLt) for m in lins)
    extra = sum(m.weight.shape[0] * 4 for m in lins)             # one float32 scale per row
    assert model_nbytes(model) == model.get_memory_footprint() + extra
    ppl = M.perplexity(model, tok)
    assert 43.0 < ppl < 43.5
    err = capfd.readouterr().err
    assert "MatMul8bitLt" not in err and "gemm_4bit_forward" not in err


def test_nf4_size_and_codes(capfd):
    model, tok = load_lm_bitsandbytes("nf4")
    import bitsandbytes as bnb
    lins = _linears(model)
    assert all(isinstance(m, bnb.nn.Linear4bit) for m in lins)
    n = sum(m.weight.quant_state.shape.numel() for m in lins)
    extra = n // 64 * 4 + len(lins) * 16 * 4                       # absmax per 64, the 16-level table per layer
    assert model_nbytes(model) == model.get_memory_footprint() + extra
    # The packed codes are coursekit's NF4 codes of the float32 weights, high nibble first.
    ref, _ = M.load_lm()
    w = ref.model.layers[0].mlp.up_proj.weight.detach()
    q = model.model.layers[0].mlp.up_proj.weight.reshape(-1)
    codes = torch.stack([q >> 4, q & 15], 1).reshape(-1)
    assert torch.equal(codes, F.encode(w, "nf4").codes.reshape(-1))
    assert 43.0 < M.perplexity(model, tok) < 43.6
    assert "gemm_4bit_forward" not in capfd.readouterr().err


def test_bad_mode():
    with pytest.raises(ValueError, match="mode: expected one of 'int8', 'nf4', 'fp4'"):
        load_lm_bitsandbytes("int4")
