import ctypes
import sys
import time

import pytest
import torch
from torch import nn

from coursekit import memory as mem


# -- the calculator ------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, expected", [
    (torch.float32, 4.0), (torch.bfloat16, 2.0), (torch.int8, 1.0), ("fp32", 4.0), ("fp16", 2.0),
    ("bf16", 2.0), ("int8", 1.0), ("int4", 0.5), ("int2", 0.25), (4, 0.5), (16, 2.0),
])
def test_bytes_per_param(spec, expected):
    assert mem.bytes_per_param(spec) == expected


def test_seven_billion_on_a_t4():
    assert mem.nbytes_for(7e9, "fp16") == 14e9
    assert mem.format_bytes(mem.nbytes_for(7e9, "fp16")) == "14.00 GB"
    rows = mem.memory_table(7e9)
    assert [r.dtype for r in rows] == ["fp32", "fp16", "bf16", "int8", "int4"]
    # the course's rule (notebooks 01 and 04): weights take at most 80 % of the GPU
    assert [r.fits for r in rows] == [False, False, False, True, True]
    assert rows[-1].nbytes == 3.5e9
    table = mem.format_memory_table(rows)
    assert "28.00 GB" in table and "3.50 GB" in table and "fits (80% of 16 GB)" in table
    assert [r.fits for r in mem.memory_table(6.4e9, dtypes=("bf16",))] == [True]    # 12.8 GB: exactly 80 %
    assert [r.fits for r in mem.memory_table(7e9, weight_share=1.0)] == [False, True, True, True, True]


def test_format_bytes_units():
    assert mem.format_bytes(0) == "0 B"
    assert mem.format_bytes(512) == "512 B"
    assert mem.format_bytes(1500) == "1.50 KB"
    assert mem.format_bytes(13.04e9) == "13.04 GB"
    assert mem.format_bytes(2e12) == "2.00 TB"


def test_calculator_bad_inputs():
    with pytest.raises(ValueError, match="dtype_or_bits"):
        mem.bytes_per_param("fp13")
    with pytest.raises(ValueError, match="dtype_or_bits"):
        mem.bytes_per_param(0)
    with pytest.raises(TypeError, match="dtype_or_bits"):
        mem.bytes_per_param(4.0)
    with pytest.raises(ValueError, match="n_params"):
        mem.nbytes_for(-1, "fp16")
    with pytest.raises(TypeError, match="n"):
        mem.format_bytes("1 GB")
    with pytest.raises(ValueError, match="device_gb"):
        mem.memory_table(7e9, device_gb=0)


# -- model_nbytes ---------------------------------------------------------------------------------

def test_plain_module_and_tied_weights():
    model = nn.Sequential(nn.Linear(10, 20), nn.BatchNorm1d(20), nn.Linear(20, 10, bias=False))
    params = (10 * 20 + 20) + (20 + 20) + 20 * 10
    buffers = 20 + 20  # running mean and var (fp32); num_batches_tracked is one int64
    assert mem.model_nbytes(model) == (params + buffers) * 4 + 8
    model[2].weight = nn.Parameter(model[0].weight.T)  # a view sharing the first layer's storage
    assert mem.model_nbytes(model) == (params - 200 + buffers) * 4 + 8


def test_packed_uint8_buffer_counts_half_a_byte_per_4bit_value():
    class Packed4bit(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("packed", torch.zeros(64, 32, dtype=torch.uint8))  # 64x64 codes
            self.register_buffer("scale", torch.ones(64, dtype=torch.float16))

    assert mem.model_nbytes(Packed4bit()) == 64 * 64 // 2 + 64 * 2


@pytest.fixture(scope="module")
def tiny_llama_config():
    transformers = pytest.importorskip("transformers")
    return transformers.LlamaConfig(
        vocab_size=1000, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)


def _tiny_llama(config, tied=False):
    from transformers import LlamaForCausalLM
    torch.manual_seed(0)
    config.tie_word_embeddings = tied
    return LlamaForCausalLM(config)


@pytest.mark.parametrize("tied", [False, True])
def test_equals_get_memory_footprint_for_plain_llama(tiny_llama_config, tied):
    model = _tiny_llama(tiny_llama_config, tied=tied)
    assert mem.model_nbytes(model) == model.get_memory_footprint()


def _expected_quantized_nbytes(model, bits, group_size=None):
    """Theory: each Linear weight at `bits` bits, fp32 scales (and shifts when grouped), two
    fp32 activation-scale scalars per quantized module, everything else unchanged."""
    total = 0
    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    linear_weights = {id(m.weight) for m in linears.values()}
    for m in linears.values():
        out_features, in_features = m.weight.shape
        total += out_features * in_features * bits // 8
        if group_size is None:
            total += out_features * 4                                   # one scale per row
        else:
            total += 2 * (out_features * in_features // group_size) * 4  # scale + shift per group
        total += 2 * 4                                                  # input_scale, output_scale
    total += sum(p.numel() * p.element_size() for p in model.parameters() if id(p) not in linear_weights)
    total += sum(b.numel() * b.element_size() for b in model.buffers())
    return total


@pytest.mark.parametrize("qtype_name, bits, group_size", [("qint8", 8, None), ("qint4", 4, 128)])
def test_quanto_quantized_llama(tiny_llama_config, qtype_name, bits, group_size):
    quanto = pytest.importorskip("optimum.quanto")
    model = _tiny_llama(tiny_llama_config)
    expected = _expected_quantized_nbytes(model, bits, group_size)
    float_size = model.get_memory_footprint()
    quanto.quantize(model, weights=getattr(quanto, qtype_name))
    quanto.freeze(model)

    weight = model.model.layers[0].mlp.down_proj.weight
    assert type(weight) is not torch.Tensor  # a quanto tensor subclass, not a plain tensor
    got = mem.model_nbytes(model)
    assert got == pytest.approx(expected, rel=0.01)
    # transformers still counts the quantized weights at their outer (float) dtype
    assert model.get_memory_footprint() >= float_size > got


# -- peak_memory ---------------------------------------------------------------------------------

def test_peak_memory_sees_a_400mb_allocation():
    def allocate():
        return torch.empty(100_000_000, dtype=torch.float32).fill_(1)

    result, peak = mem.peak_memory(allocate)
    assert result.numel() == 100_000_000
    del result
    assert peak == pytest.approx(400e6, rel=0.15)


def test_peak_memory_passes_arguments_through():
    result, peak = mem.peak_memory(lambda a, b=0: a + b, 1, b=2)
    assert result == 3 and peak >= 0


def test_peak_memory_bad_inputs():
    with pytest.raises(TypeError, match="fn"):
        mem.peak_memory(42)
    with pytest.raises(ValueError, match="device"):
        mem.peak_memory(lambda: None, device="tpu")
    with pytest.raises(ValueError, match="interval"):
        mem.peak_memory(lambda: None, interval=0)


def test_model_nbytes_bad_input():
    with pytest.raises(TypeError, match="model"):
        mem.model_nbytes(torch.zeros(3))


# --------------------------------------------------------------------------- memory_trace
def test_memory_trace_sees_a_private_allocation_while_it_lives():
    def allocate():
        x = torch.ones(12_500_000)            # 50 MB of private memory, touched
        time.sleep(0.05)                      # long enough for several samples
        return x

    # After a long test session, freed memory may still sit in the process (glibc keeps it for
    # reuse), and 50 MB could come from pages already resident: hand them back to the OS first,
    # so that the allocation needs new pages, which is what this test is about.
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    x, trace = mem.memory_trace(allocate, interval=0.002)
    assert x.numel() == 12_500_000
    assert len(trace.seconds) == len(trace.private) == len(trace.total) >= 3
    assert trace.peak_private >= 40e6 and trace.peak_total >= trace.peak_private - 5e6


def test_memory_trace_in_a_new_process_starts_clean():
    trace = mem.memory_trace_in_new_process("torch.ones(25_000_000)", setup="import time")
    assert 90e6 <= trace.peak_private <= 150e6        # 100 MB of floats, little else


def test_memory_trace_rejects_bad_arguments():
    with pytest.raises(TypeError, match="fn"):
        mem.memory_trace(3)
    with pytest.raises(TypeError, match="expression"):
        mem.memory_trace_in_new_process(lambda: 1)
    with pytest.raises(RuntimeError, match="measuring 'undefined_name' in a new process failed"):
        mem.memory_trace_in_new_process("undefined_name")


# -- beyond the weights ---------------------------------------------------------------------------

def _adam_step(model, x):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(x).square().sum().backward()
    opt.step()
    return opt


def test_training_state_bytes_of_fp32_adam_is_16_bytes_per_parameter():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 8))
    n = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    assert mem.training_state_bytes(model, opt) == {"weights": 4 * n, "gradients": 0, "optimizer state": 0}
    opt = _adam_step(model, torch.randn(5, 32))
    got = mem.training_state_bytes(model, opt)
    steps = sum(s["step"].numel() * s["step"].element_size() for s in opt.state.values())
    assert got == {"weights": 4 * n, "gradients": 4 * n, "optimizer state": 8 * n + steps}
    model.half()   # gradients and moments follow the storage they measure, not a fixed 4 bytes
    assert mem.training_state_bytes(model, opt)["weights"] == 2 * n


def test_training_state_bytes_counts_a_tied_weight_once():
    emb = nn.Embedding(100, 16)
    head = nn.Linear(16, 100, bias=False)
    head.weight = emb.weight
    model = nn.ModuleDict({"emb": emb, "head": head})
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert mem.training_state_bytes(model, opt)["weights"] == 100 * 16 * 4


def test_training_state_bytes_bad_arguments():
    with pytest.raises(TypeError, match="model"):
        mem.training_state_bytes("model", None)
    with pytest.raises(TypeError, match="optimizer"):
        mem.training_state_bytes(nn.Linear(2, 2), [1, 2])


def test_saved_activation_bytes_of_a_linear_relu_stack():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 8))
    x = torch.randn(10, 32)
    out, nbytes = mem.saved_activation_bytes(model, x, exclude=model)
    # linear 1 saves x (10x32); ReLU saves its output (10x64), which linear 2 saves too: one storage
    assert nbytes == (10 * 32 + 10 * 64) * 4
    assert out.shape == (10, 8)
    _, with_weights = mem.saved_activation_bytes(model, x)
    # the second layer saves its weight to pass the gradient back to its input; the first does not
    # need to (x needs no gradient)
    assert with_weights == nbytes + 8 * 64 * 4
    with torch.no_grad():
        assert mem.saved_activation_bytes(model, x)[1] == 0          # nothing is saved without autograd


def test_saved_activation_bytes_sees_checkpointing_save_only_the_input():
    from torch.utils.checkpoint import checkpoint
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Sequential(nn.Linear(64, 64), nn.Tanh()) for _ in range(4)])
    x = torch.randn(16, 64, requires_grad=True)
    _, plain = mem.saved_activation_bytes(model, x, exclude=model)

    def checkpointed(x):
        for block in model:
            x = checkpoint(block, x, use_reentrant=False)
        return x

    out, kept = mem.saved_activation_bytes(checkpointed, x, exclude=model)
    assert plain == (1 + 4) * 16 * 64 * 4     # x, then each Tanh output (the next Linear's input)
    assert kept == 4 * 16 * 64 * 4            # one input per checkpointed block
    out.sum().backward()                      # and the gradient still arrives
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_saved_activation_bytes_bad_arguments():
    with pytest.raises(TypeError, match="fn"):
        mem.saved_activation_bytes(3)
    with pytest.raises(TypeError, match="exclude"):
        mem.saved_activation_bytes(lambda: None, exclude=[torch.zeros(1)])


@pytest.mark.parametrize("stage, expected_gb", [(0, 112.0), (1, 28 + 84 / 8), (2, 14 + 98 / 8), (3, 112 / 8)])
def test_zero_bytes_per_gpu_7b_on_8_gpus(stage, expected_gb):
    assert mem.zero_bytes_per_gpu(7e9, 8, stage) == pytest.approx(expected_gb * 1e9)


def test_zero_bytes_per_gpu_one_gpu_and_bad_arguments():
    assert {mem.zero_bytes_per_gpu(1e9, 1, s) for s in range(4)} == {16e9}
    assert mem.zero_bytes_per_gpu(1e9, 4, 3, weight_bytes=4, grad_bytes=4, optimizer_bytes=8) == 4e9
    with pytest.raises(ValueError, match="stage"):
        mem.zero_bytes_per_gpu(1e9, 8, 4)
    with pytest.raises(ValueError, match="n_gpus"):
        mem.zero_bytes_per_gpu(1e9, 0, 1)
    with pytest.raises(TypeError, match="n_gpus"):
        mem.zero_bytes_per_gpu(1e9, 2.5, 1)
