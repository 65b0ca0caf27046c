"""coursekit.kernels: the fused int8/int4 CPU kernels against a plain dequantize-then-matmul reference.

No timings here: benchmarks/decode.py measures speed.
"""
import copy
import dataclasses
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from coursekit import kernels, layers, packing, quant
from coursekit.kernels import Int4WeightLinear, Int8WeightLinear, cpu_features
from coursekit.memory import model_nbytes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _linear(in_f, out_f, bias=True, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    lin = nn.Linear(in_f, out_f, bias=bias)
    if bias:
        with torch.no_grad():
            lin.bias.normal_(0, 0.1)
    return lin.to(dtype)


def _reference(layer, x):
    """Plain dequantize-then-matmul in fp32, from the layer's own stored codes and scales."""
    y = F.linear(x.float(), layer.dequantized_weight(torch.float32))
    return y if layer.bias is None else y + layer.bias.float()


def _assert_bf16_close(y, ref):
    """The kernels round the output to bf16 (8 significant bits): allow 2 units of the largest value."""
    y, ref = y.detach().float(), ref.detach().float()
    assert y.shape == ref.shape
    err = float((y - ref).abs().max() / ref.abs().max())
    assert err < 2 ** -7, err


LAYERS = [
    pytest.param(lambda lin: Int8WeightLinear.from_linear(lin), id="int8"),
    pytest.param(lambda lin: Int4WeightLinear.from_linear(lin, group_size=32), id="int4-g32"),
    pytest.param(lambda lin: Int4WeightLinear.from_linear(lin, group_size=128), id="int4-g128"),
]
SHAPES = [(128, 64), (256, 80), (512, 48), (1024, 272), (256, 100), (128, 7)]
# (in, out): out 80 and 272 leave part-blocks of the packing; 100 and 7 are no multiple of 16 (padded rows)


# --------------------------------------------------------------------------- outputs
@pytest.mark.parametrize("make", LAYERS)
@pytest.mark.parametrize("in_f,out_f", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_matches_dequantize_then_matmul(make, in_f, out_f, bias):
    layer = make(_linear(in_f, out_f, bias=bias))
    assert layer.kernel_path().startswith("aten ")
    torch.manual_seed(1)
    with torch.no_grad():
        for x in (torch.randn(1, in_f), torch.randn(7, in_f), torch.randn(2, 5, in_f), torch.randn(in_f)):
            y = layer(x)
            assert y.dtype == x.dtype and y.shape == (*x.shape[:-1], out_f)
            _assert_bf16_close(y, _reference(layer, x))
    assert layer.path == layer.kernel_path()


@pytest.mark.parametrize("make", LAYERS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_output_dtype_follows_the_input(make, dtype):
    layer = make(_linear(256, 64))
    x = torch.randn(3, 4, 256).to(dtype)
    with torch.no_grad():
        y = layer(x)
    assert y.dtype == dtype and layer.path.startswith("aten ")
    _assert_bf16_close(y, _reference(layer, x))


@pytest.mark.parametrize("make", LAYERS)
def test_close_to_the_float_layer_and_empty_batch(make):
    lin = _linear(512, 128)
    layer = make(lin)
    x = torch.randn(16, 512)
    with torch.no_grad():
        rel = float((layer(x) - lin(x)).norm() / lin(x).norm())
        assert rel < 0.12          # quantization error (int4 is the larger), not a layout mix-up (~1.4)
        assert layer(torch.randn(0, 512)).shape == (0, 128)


def test_misaligned_inputs_and_weights_do_not_crash_the_int8_kernel():
    """Its AVX-512 loop uses aligned loads: a view that starts 16 bytes in would crash the process."""
    layer = Int8WeightLinear.from_linear(_linear(64, 32))
    x = torch.randn(3 * 64 + 8, dtype=torch.bfloat16)[8:].view(3, 64)
    assert x.data_ptr() % 32
    sd = {k: v.clone() for k, v in layer.state_dict().items()}
    sd["int8_weight"] = torch.zeros(32 * 64 + 16, dtype=torch.int8)[16:].view(32, 64).copy_(sd["int8_weight"])
    loaded = Int8WeightLinear(64, 32, device="meta")
    loaded.load_state_dict(sd, assign=True)
    assert loaded.int8_weight.data_ptr() % 64
    with torch.no_grad():
        _assert_bf16_close(loaded(x), _reference(layer, x))
    assert loaded.path == "aten int8 kernel"


# --------------------------------------------------------------------------- what is stored
def test_int8_codes_and_scales_are_coursekit_quant():
    lin = _linear(256, 48)
    layer = Int8WeightLinear.from_linear(lin)
    q = quant.quantize(lin.weight.detach(), bits=8, symmetric=True, granularity="per_channel", axis=0)
    assert torch.equal(layer.int8_weight, q.data)
    assert torch.equal(layer.int8_weight, layers.W8A16Linear.from_linear(lin).int8_weight)
    assert layer.scales.dtype == torch.bfloat16
    assert torch.equal(layer.scales, q.scale.reshape(-1).to(torch.bfloat16))


@pytest.mark.parametrize("group_size", kernels.INT4_GROUP_SIZES)
def test_int4_codes_scales_and_zeros_are_coursekit_quant(group_size):
    lin = _linear(512, 80)
    layer = Int4WeightLinear.from_linear(lin, group_size=group_size)
    q = quant.quantize(lin.weight.detach(), bits=4, symmetric=False, granularity="per_group", group_size=group_size)
    assert torch.equal(layer.unsigned_codes().to(torch.int8) - 8, q.data)
    scale, zero = layer.scales_and_zeros.unbind(-1)                  # (n_groups, out_features) each
    assert layer.scales_and_zeros.shape == (512 // group_size, 80, 2)
    assert torch.equal(scale.t(), q.scale.to(torch.bfloat16))
    assert torch.equal(zero.t(), (-q.zero_point.float() * q.scale.to(torch.bfloat16).float()).to(torch.bfloat16))
    # the same grid as the readable packed layer, up to rounding the scale and zero to bf16
    readable = layers.W4A16Linear.from_linear(lin, group_size=group_size).dequantized_weight()
    assert float((layer.dequantized_weight() - readable).abs().max()) < 1e-2 * float(readable.abs().max())


@pytest.mark.parametrize("rows", [16, 48, 80, 272])
def test_int4_codes_read_back_through_the_kernel_are_exact(rows):
    """_unpack_int4 reads the packed bytes with the kernel itself (an identity matmul, unit scales,
    zero 8): the codes come back exactly, for full and part blocks of this CPU's byte order."""
    codes = torch.randint(0, 16, (rows, 1024 + 64), dtype=torch.int32, generator=torch.Generator().manual_seed(rows))
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 1)
    assert torch.equal(kernels._unpack_int4(packed, 32).int(), codes)


@pytest.mark.parametrize("out_f", [7, 100])
def test_int4_pads_rows_to_a_multiple_of_16_and_slices_the_output(out_f):
    lin = _linear(256, out_f)
    layer = Int4WeightLinear.from_linear(lin, group_size=64)
    rows = -(-out_f // 16) * 16
    assert layer.packed_weight.shape == (rows, 128) and layer.scales_and_zeros.shape == (4, rows, 2)
    q = quant.quantize(lin.weight.detach(), bits=4, symmetric=False, granularity="per_group", group_size=64)
    assert torch.equal(layer.unsigned_codes().to(torch.int8) - 8, q.data)
    x = torch.randn(5, 256)
    with torch.no_grad():
        y = layer(x)
    assert y.shape == (5, out_f) and layer.path == "aten int4 kernel"
    _assert_bf16_close(y, _reference(layer, x))
    assert model_nbytes(layer) == rows * 128 + 4 * rows * 2 * 2 + 4 * out_f      # padding rows are stored


@pytest.mark.parametrize("kind,group_size", [("int8", None), ("int4", 64), ("int4", 256)])
@pytest.mark.parametrize("bias", [True, False])
def test_model_nbytes_is_exactly_the_theoretical_bytes(kind, group_size, bias):
    n, k = 96, 512                                                     # out, in
    lin = _linear(k, n, bias=bias)
    if kind == "int8":      # a byte a code, a bf16 scale per row
        layer, expected = Int8WeightLinear.from_linear(lin), n * k + 2 * n
    else:                   # half a byte a code, a bf16 scale and zero per group
        layer, expected = Int4WeightLinear.from_linear(lin, group_size), n * k // 2 + (k // group_size) * n * 2 * 2
    assert model_nbytes(layer) == expected + (4 * n if bias else 0)    # + the fp32 bias


# --------------------------------------------------------------------------- shapes the kernels refuse
def test_int8_in_features_not_a_multiple_of_16_takes_the_fallback_and_says_why():
    layer = Int8WeightLinear.from_linear(_linear(100, 24))
    assert layer.kernel_path().startswith("fallback: in_features=100 is not a multiple of 16")
    x = torch.randn(3, 100)
    with torch.no_grad():
        y = layer(x)
    assert layer.path == layer.kernel_path()
    torch.testing.assert_close(y, _reference(layer, x), rtol=1e-5, atol=1e-5)     # fp32 fallback: exact-ish
    assert "fallback" in repr(layer)


def test_int4_refuses_group_sizes_it_cannot_take_at_construction():
    with pytest.raises(ValueError, match=r"group_size: expected one of 32, 64, 128, 256, got 16"):
        Int4WeightLinear.from_linear(_linear(128, 32), group_size=16)
    with pytest.raises(ValueError, match=r"group_size: expected one of \(32, 64, 128, 256\) that divides "
                                         r"linear.in_features \(96\): \[32\], got 64"):
        Int4WeightLinear.from_linear(_linear(96, 32), group_size=64)
    with pytest.raises(ValueError, match=r"group_size: .*none does"):
        Int4WeightLinear(in_features=48, out_features=32, group_size=32)
    with pytest.raises(ValueError, match=r"group_size: expected one of"):
        Int4WeightLinear.from_linear(_linear(128, 32), group_size=True)


@pytest.mark.parametrize("cls", [Int8WeightLinear, Int4WeightLinear])
def test_bad_arguments_name_themselves(cls):
    with pytest.raises(TypeError, match=r"linear: expected a torch.nn.Linear, got Conv1d"):
        cls.from_linear(nn.Conv1d(4, 4, 1))
    layer = cls.from_linear(_linear(128, 32))
    with pytest.raises(ValueError, match=r"x: expected a last dimension of 128 \(in_features\), got shape \(2, 64\)"):
        layer(torch.randn(2, 64))
    with pytest.raises(ValueError, match=r"x: expected a floating-point torch.Tensor"):
        layer(torch.ones(2, 128, dtype=torch.int64))


# --------------------------------------------------------------------------- devices, meta, state dicts
@pytest.mark.parametrize("make", LAYERS)
def test_meta_layer_reports_the_fallback_and_loads_a_state_dict(make):
    layer = make(_linear(256, 64))
    empty = make(nn.Linear(256, 64, device="meta"))
    assert empty.kernel_path() == "fallback: weights on meta (these fused kernels are CPU-only)"
    assert empty(torch.randn(2, 256, device="meta")).shape == (2, 64)
    empty.load_state_dict(layer.state_dict(), assign=True)
    x = torch.randn(4, 256)
    with torch.no_grad():
        assert torch.equal(empty(x), layer(x)) and empty.path.startswith("aten ")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("make", LAYERS)
def test_cuda_takes_the_dequantize_fallback(make):
    layer = make(_linear(256, 64))
    x = torch.randn(3, 256)
    with torch.no_grad():
        cpu = layer(x)
        gpu_layer = layer.to("cuda")
        y = gpu_layer(x.cuda())
    assert gpu_layer.path == "fallback: weights on cuda (these fused kernels are CPU-only)"
    _assert_bf16_close(y.cpu(), cpu)


def test_int4_state_dict_is_portable_across_cpu_kernel_levels(tmp_path):
    """The state dict holds the codes in coursekit.packing's order, not the CPU's: a checkpoint
    written where PyTorch runs AVX-512 (or AVX2) kernels loads where it runs others, and back."""
    layer = Int4WeightLinear.from_linear(_linear(256, 80), group_size=64)
    sd = layer.state_dict()
    codes = layer.unsigned_codes()
    assert torch.equal(sd["packed_weight"], packing.pack(codes, 4).view(80, 128))
    assert torch.equal(layer.packed_weight, torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.int(), 1))
    assert all(isinstance(v, torch.Tensor) for v in sd.values())        # safetensors can store it
    torch.save(sd, tmp_path / "sd.pt")
    torch.save(torch.randn(3, 256), tmp_path / "x.pt")
    other = "default" if kernels.cpu_features().capability != "DEFAULT" else "avx2"
    script = textwrap.dedent(f"""
        import torch
        from coursekit.kernels import Int4WeightLinear
        layer = Int4WeightLinear(256, 80, group_size=64)
        layer.load_state_dict(torch.load({str(tmp_path / 'sd.pt')!r}))
        with torch.no_grad():
            torch.save((layer.unsigned_codes(), layer(torch.load({str(tmp_path / 'x.pt')!r})), layer.state_dict()),
                       {str(tmp_path / 'out.pt')!r})
        print(layer.path)
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "ATEN_CPU_CAPABILITY": other})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["aten", "int4", "kernel"], out.stdout
    there_codes, there_y, there_sd = torch.load(tmp_path / "out.pt")
    assert torch.equal(there_codes, codes)
    assert torch.equal(there_sd["packed_weight"], sd["packed_weight"])        # and it writes the same file
    with torch.no_grad():
        _assert_bf16_close(there_y, layer(torch.load(tmp_path / "x.pt")))


# --------------------------------------------------------------------------- in a model
def test_replace_linear_builds_a_working_kernel_model():
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=96, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 96, (2, 12))
    with torch.no_grad():
        ref = model(ids).logits

    def rel(a, b):
        return float((a - b).norm() / b.norm())

    for cls, kwargs, readable in ((Int8WeightLinear, {}, layers.W8A16Linear),
                                  (Int4WeightLinear, {"group_size": 64}, layers.W4A16Linear)):
        q = layers.replace_linear(copy.deepcopy(model), cls, **kwargs)
        swapped = [m for m in q.modules() if isinstance(m, cls)]
        assert len(swapped) == 14 and not isinstance(q.lm_head, cls)      # 7 per block; the head kept
        assert all(m.path is None for m in swapped)
        with torch.no_grad():
            logits = q(ids).logits
            same_grid = layers.replace_linear(copy.deepcopy(model), readable, **kwargs)(ids).logits
        assert all(m.path == cls.KERNEL for m in swapped)
        assert rel(logits, same_grid) < 0.03          # the readable layer on the same grid (bf16 activations)
        assert rel(logits, ref) < (0.05 if cls is Int8WeightLinear else 0.3)
        assert model_nbytes(q) < model_nbytes(model)


# --------------------------------------------------------------------------- cpu_features
def test_cpu_features_are_bools_with_a_summary():
    f = cpu_features()
    flags = {k: v for k, v in dataclasses.asdict(f).items() if k not in ("capability", "source")}
    assert set(flags) >= {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8"}
    assert all(isinstance(v, bool) for v in flags.values()) and isinstance(f.amx, bool)
    assert f.capability == torch.backends.cpu.get_cpu_capability()
    assert isinstance(f.summary, str) and "\n" not in f.summary and str(f) == f.summary
    assert f.capability in f.summary and ("AMX" in f.summary)
    if os.path.exists("/proc/cpuinfo"):
        assert f.source == "/proc/cpuinfo"
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.avx2 = True


def test_cpu_features_without_proc_cpuinfo_fall_back_to_torch(monkeypatch):
    monkeypatch.setattr(kernels.cpu, "cpu_flags", lambda path="/proc/cpuinfo": None)
    f = kernels.cpu_features.__wrapped__()
    assert f.source.startswith("torch")
    assert f.avx512f == f.capability.startswith("AVX512")
    assert f.avx2 == (f.capability.startswith("AVX512") or f.capability == "AVX2")
    assert not f.amx and "flags from torch" in f.summary


# --------------------------------------------------------------------------- the decode benchmark runs
def test_decode_benchmark_runs_small_and_writes_its_prose():
    """benchmarks/decode.py on tiny sizes: the code runs and reports; its figures are not tested."""
    from benchmarks import decode
    r = decode.run(n=256, n_layers=2, repeats=1, batch_repeats=1, batch=4)
    assert {(x["variant"], x["batch"]) for x in r["rows"]} == {(v, b) for v in decode.VARIANTS for b in (1, 4)}
    assert all(x["ms_per_step"] > 0 and x["floor_ms"] > 0 for x in r["rows"]) and r["bandwidth_gbs"] > 0
    paths = {x["variant"]: x["path"] for x in r["rows"]}
    assert paths["int8 kernel"] == "aten int8 kernel" and paths["int4 kernel (g128)"] == "aten int4 kernel"
    md = decode.to_markdown(r)
    assert "this run times the cache, not memory" in md       # 2 layers of 256x256 fit in any LLC
    for words in ("**Batch 1", "**Batch 4", "**Verdict.**", "| int4 kernel (g128) |", r["cpu_features"]):
        assert words in md


def test_the_stopwatch_times_in_rounds_and_names_a_bad_argument():
    from coursekit.kernels import interleaved_median_ms, median_ms
    calls = []
    ms = interleaved_median_ms({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=2)
    assert calls == ["a", "b", "a", "b", "a", "b"] and set(ms) == {"a", "b"}
    assert median_ms(lambda: None, repeats=3) >= 0
    with pytest.raises(ValueError, match="repeats"):
        interleaved_median_ms({"a": lambda: None}, repeats=0)
