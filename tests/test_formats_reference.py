"""coursekit.formats against maintained implementations, bit for bit.

* GGUF Q8_0, Q4_0, Q4_1 and MXFP4 against ``gguf.quants`` (the NumPy port of ggml's reference
  quantizers, in llama.cpp's own ``gguf`` package): every byte of every block, on random tensors
  (including blocks of zeros and scales spread over 9 decades) and on more than a million real
  weights (all matrices of the course LM and the first two layers of the encoder).
* NF4 against ``bitsandbytes.functional.quantize_4bit(quant_type="nf4")`` on the CPU: codes,
  absmax and dequantized values.
* FP8 against torch's own casts: in test_formats.py.
"""
import numpy as np
import pytest
import torch

import coursekit.formats as F
from coursekit.bnb import quiet_bitsandbytes

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf import quants  # noqa: E402

GGUF_TYPES = {"q8_0": T.Q8_0, "q4_0": T.Q4_0, "q4_1": T.Q4_1, "mxfp4": T.MXFP4}
TYPE_SIZE = {"q8_0": 34, "q4_0": 18, "q4_1": 20, "mxfp4": 17}


def _random_tensors():
    g = torch.Generator().manual_seed(0)
    wide = torch.randn(64, 256, generator=g) * torch.logspace(-6, 3, 256)
    with_zeros = torch.randn(16, 128, generator=g)
    with_zeros[3] = 0
    with_zeros[5, :32] = 0
    ties = torch.randint(-16, 17, (32, 64), generator=g).float() / 4     # many exact midpoints
    return {"randn": torch.randn(256, 512, generator=g) * 0.03, "wide": wide, "zeros": with_zeros,
            "ties": ties}


@pytest.fixture(scope="module")
def real_weights():
    import coursekit.models as M
    lm, _ = M.load_lm()
    enc, _ = M.load_encoder()
    mats = [p.detach() for p in lm.parameters() if p.dim() == 2]
    mats += [p.detach() for n, p in enc.named_parameters()
             if p.dim() == 2 and n.startswith(("encoder.layer.0.", "encoder.layer.1."))]
    rows = torch.cat([m.reshape(-1, 128) for m in mats])
    assert rows.numel() >= 1_000_000
    return rows


def _compare_gguf(x: torch.Tensor, fmt: str) -> tuple[int, int]:
    """(mismatching blocks, blocks) of coursekit's bytes vs gguf.quants', in chunks of rows."""
    bad = total = 0
    for chunk in torch.split(x, 4096):
        ref = quants.quantize(chunk.numpy(), GGUF_TYPES[fmt]).reshape(-1, TYPE_SIZE[fmt])
        ours = F.encode(chunk, fmt).to_gguf_bytes()
        assert ours.shape == ref.shape and ours.dtype == np.uint8
        bad += int((ours != ref).any(axis=1).sum())
        total += ref.shape[0]
    return bad, total


@pytest.mark.parametrize("fmt", list(GGUF_TYPES))
@pytest.mark.parametrize("name", list(_random_tensors()))
def test_gguf_blocks_bit_exact_on_random(fmt, name):
    x = _random_tensors()[name]
    bad, total = _compare_gguf(x, fmt)
    assert bad == 0, f"{bad} of {total} blocks differ"
    # Decoding: ours on our codes equals gguf's dequantize of its own bytes.
    ref = quants.dequantize(quants.quantize(x.numpy(), GGUF_TYPES[fmt]), GGUF_TYPES[fmt])
    assert np.array_equal(F.roundtrip(x, fmt).numpy(), ref)


def _just_below_powers_of_two():
    """Blocks whose amax sits 0..3 float32 steps below (and 0..1 above) 2^k, k from -20 to 20."""
    amax = []
    for k in range(-20, 21):
        p = torch.tensor(2.0 ** k)
        below = [p]
        for _ in range(3):
            below.append(torch.nextafter(below[-1], torch.tensor(0.0)))
        amax += below + [torch.nextafter(p, torch.tensor(float("inf")))]
    amax = torch.stack(amax)
    g = torch.Generator().manual_seed(3)
    blocks = torch.rand(len(amax), 32, generator=g) * amax[:, None] * 0.9
    blocks[:, 7] = amax * torch.where(torch.arange(len(amax)) % 2 == 0, 1.0, -1.0)
    return blocks


def test_mxfp4_takes_log2_in_float32_as_ggml_does():
    """amax = 7.9999995 (one step below 8): float32's log2 rounds to 3.0, so ggml picks E8M0 128,
    where the exact floor(log2) would give 127; coursekit's MXFP4 follows ggml, bit for bit."""
    x = torch.full((1, 32), 0.25)
    x[0, 0] = 7.9999995
    assert float(x[0, 0]) == float(torch.nextafter(torch.tensor(8.0), torch.tensor(0.0)))
    ref = quants.quantize(x.numpy(), T.MXFP4).reshape(-1, 17)
    assert ref[0, 0] == 128
    assert int(F.e8m0_from_amax(x.abs().amax(dim=1))[0]) == 127          # the spec's exact rule differs
    assert np.array_equal(F.encode(x, "mxfp4").to_gguf_bytes(), ref)
    bad, total = _compare_gguf(_just_below_powers_of_two(), "mxfp4")
    assert bad == 0, f"{bad} of {total} blocks differ"


@pytest.mark.parametrize("fmt", list(GGUF_TYPES))
def test_gguf_blocks_bit_exact_on_a_million_real_weights(fmt, real_weights):
    bad, total = _compare_gguf(real_weights, fmt)
    assert total * 32 >= 1_000_000
    assert bad == 0, f"{bad} of {total} blocks differ"


@pytest.mark.parametrize("fmt", list(GGUF_TYPES))
def test_gguf_bytes_read_back(fmt):
    x = _random_tensors()["randn"]
    raw = quants.quantize(x.numpy(), GGUF_TYPES[fmt])
    enc = F.Encoded.from_gguf_bytes(raw, x.shape, fmt)
    assert np.array_equal(F.decode(enc).numpy(), quants.dequantize(raw, GGUF_TYPES[fmt]))
    assert raw.nbytes == F.nbytes(x.shape, fmt)


quiet_bitsandbytes()
bnb_functional = pytest.importorskip("bitsandbytes.functional")


def _bnb_nf4(x):
    packed, state = bnb_functional.quantize_4bit(x, blocksize=64, quant_type="nf4")
    flat = packed.reshape(-1)
    codes = torch.stack([flat >> 4, flat & 0x0F], dim=1).reshape(-1)   # bitsandbytes: first code high
    return codes, state.absmax, bnb_functional.dequantize_4bit(packed, state)


def test_nf4_table_equals_bitsandbytes():
    assert torch.equal(F.nf4_levels(), bnb_functional.get_4bit_type("nf4", device="cpu"))


@pytest.mark.parametrize("name", list(_random_tensors()))
def test_nf4_bit_exact_with_bitsandbytes_on_random(name):
    x = _random_tensors()[name]
    codes, absmax, deq = _bnb_nf4(x)
    enc = F.encode(x, "nf4")
    assert torch.equal(enc.codes.reshape(-1), codes)
    assert torch.equal(enc.scales, absmax)
    assert torch.equal(F.decode(enc), deq)


def test_nf4_bit_exact_with_bitsandbytes_on_real_weights(real_weights):
    codes, absmax, deq = _bnb_nf4(real_weights)
    enc = F.encode(real_weights, "nf4")
    assert int((enc.codes.reshape(-1) != codes).sum()) == 0
    assert torch.equal(enc.scales, absmax)
    assert torch.equal(F.decode(enc), deq)
