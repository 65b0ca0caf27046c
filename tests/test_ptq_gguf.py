"""GPTQ onto GGUF's block grids (coursekit.ptq.gguf_gptq): the blocks it returns are what the file holds."""
import pytest
import torch

import coursekit.formats as F
import coursekit.models as M
from coursekit import ptq
from coursekit.ptq.gguf_gptq import GPTQ_TYPES, gptq_gguf, gptq_weight_gguf

pytest.importorskip("gguf")
from coursekit.gguf_export import as_exported, export_gguf, gguf_name, read_gguf, tensor_types  # noqa: E402


def _correlated(seed=0, rows=48, cols=128, tokens=512):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(cols, cols, generator=g) / cols ** 0.5 + torch.eye(cols)
    x = torch.randn(tokens, cols, generator=g) @ mix
    x[:, 3] *= 8                                             # an outlier channel, as LLMs have
    return torch.randn(rows, cols, generator=g), x.T @ x / tokens


def _output_error(values, w, h):
    d = (values - w).double()
    return float(torch.einsum("oi,ij,oj->", d, h.double(), d))


@pytest.mark.parametrize("fmt", GPTQ_TYPES)
def test_gptq_beats_round_to_nearest_on_the_same_grid(fmt):
    w, h = _correlated()
    enc = gptq_weight_gguf(w, h, fmt)
    assert enc.fmt == fmt and enc.shape == tuple(w.shape) and enc.nbytes == F.nbytes(tuple(w.shape), fmt)
    gptq_err, rtn_err = _output_error(F.decode(enc), w, h), _output_error(F.roundtrip(w, fmt), w, h)
    assert gptq_err < 0.7 * rtn_err, (gptq_err, rtn_err)


@pytest.mark.parametrize("fmt", GPTQ_TYPES)
def test_with_identity_h_it_is_rounding_to_the_stored_grid(fmt):
    # nothing propagates: every weight on the nearest level of its block's float16 grid, so within
    # half a step of where it was (Q4_0's top code 7 is a whole step short of the other end's -8), and
    # codes differ from the encoder's only where its float32 d and the stored float16 d round a
    # weight differently (a small fraction)
    w, _ = _correlated(1)
    enc = gptq_weight_gguf(w, torch.eye(w.shape[1]), fmt)
    values, rtn = F.decode(enc), F.roundtrip(w, fmt)
    step = (enc.scales[:, 0] if fmt == "q4_1" else enc.scales).float().abs().repeat_interleave(32).reshape(w.shape)
    reach = torch.where(enc.codes.reshape(w.shape) == 15, 1.0, 0.5) if fmt == "q4_0" else 0.5
    assert torch.all((values - w).abs() <= step * reach * (1 + 1e-3) + 1e-7)
    assert (values != rtn).float().mean() < 0.01


@pytest.mark.parametrize("fmt", GPTQ_TYPES)
def test_blocks_survive_the_bytes_of_a_file(fmt):
    w, h = _correlated(2)
    enc = gptq_weight_gguf(w, h, fmt)
    back = F.Encoded.from_gguf_bytes(enc.to_gguf_bytes(), enc.shape, fmt)
    assert torch.equal(F.decode(back), F.decode(enc))


def test_bad_arguments_name_themselves():
    w, h = _correlated(3)
    with pytest.raises(ValueError, match="fmt"):
        gptq_weight_gguf(w, h, "mxfp4")
    with pytest.raises(ValueError, match="w"):
        gptq_weight_gguf(w[:, :100], h[:100, :100], "q4_0")
    with pytest.raises(ValueError, match="h"):
        gptq_weight_gguf(w, h[:64, :64], "q4_0")
    with pytest.raises(ValueError, match="group_grid"):
        gptq_weight_gguf(w, h, "q4_0", group_grid="static")


@pytest.fixture(scope="module")
def lm_gptq():
    model, tok = M.load_lm()
    cal = ptq.calibrate(model, tok, M.calibration_texts(32))
    policy = {"token_embd.weight": "q8_0", "blk.0.*": "q4_1", "blk.*.attn_v.weight": "q8_0", "*": "q4_0"}
    return model, tok, policy, gptq_gguf(model, cal, policy)


def test_model_gptq_covers_the_calibrated_matrices_in_their_policy_type(lm_gptq):
    model, _, policy, encoded = lm_gptq
    types = tensor_types(model, policy)
    linears = {gguf_name(n + ".weight") for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and n != "lm_head"}
    assert set(encoded) == linears                           # not the embedding: it sees no calibration
    assert {types[n] for n in encoded} == {"q4_1", "q8_0", "q4_0"}
    for name, enc in encoded.items():
        assert enc.fmt == types[name]


def test_file_and_package_hold_gptqs_blocks(lm_gptq, tmp_path):
    # written as they are (query/key rows reordered for llama.cpp, as whole blocks) and read back equal
    model, tok, policy, encoded = lm_gptq
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / "gptq.gguf"
    export_gguf(model, tok, path, policy, encoded=encoded)
    tensors = read_gguf(path)
    with as_exported(model, policy, encoded=encoded):
        inside = {k: v.clone() for k, v in model.state_dict().items()}
    for name, enc in encoded.items():
        assert torch.equal(tensors[name].values, F.decode(enc)), name
    for hf_name, value in inside.items():
        name = gguf_name(hf_name)
        if name in tensors:
            assert torch.equal(value.float(), tensors[name].values.reshape(value.shape)), hf_name
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())   # the model is unchanged
    assert not torch.equal(inside["model.layers.1.mlp.up_proj.weight"],
                           F.roundtrip(before["model.layers.1.mlp.up_proj.weight"], "q4_0"))


def test_encoded_of_the_wrong_type_or_name_is_refused(lm_gptq, tmp_path):
    model, tok, policy, encoded = lm_gptq
    with pytest.raises(ValueError, match=r"encoded\['blk.1.ffn_up.weight'\].*'q4_0'"):
        with as_exported(model, "q8_0", encoded={"blk.1.ffn_up.weight": encoded["blk.1.ffn_up.weight"]}):
            pass
    with pytest.raises(ValueError, match="encoded"):
        export_gguf(model, tok, tmp_path / "x.gguf", policy,
                    encoded={"blk.99.ffn_up.weight": encoded["blk.1.ffn_up.weight"]})
    with pytest.raises(TypeError, match="encoded"):
        export_gguf(model, tok, tmp_path / "x.gguf", policy, encoded=[1])
