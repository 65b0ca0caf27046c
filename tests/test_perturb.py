"""`make test-perturbed`: loaded models get a reproducible nudge of relative size eps, and nothing else."""

import os
import subprocess
import sys

import pytest
import torch

from coursekit import perturb


def _model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.LayerNorm(32))
    model.register_buffer("codes", torch.arange(10, dtype=torch.int8))
    return model


def test_every_float_weight_moves_by_about_eps_and_integers_stay():
    model, before = _model(), _model()
    assert perturb.perturb_(model, 1e-3, seed=0) == 4          # weight, bias, LN weight, LN bias
    w, w0 = model[0].weight.detach(), before[0].weight.detach()
    rel = ((w - w0) / w0).flatten()
    assert 0.5e-3 < float(rel.std()) < 2e-3                     # ~ eps * N(0, 1)
    assert torch.equal(model.codes, before.codes)


def test_the_nudge_depends_on_the_name_and_the_seed_only():
    a, b, c = _model(), _model(), _model()
    perturb.perturb_(a, 1e-6, seed=0)
    perturb.perturb_(b, 1e-6, seed=0)
    perturb.perturb_(c, 1e-6, seed=1)
    assert torch.equal(a[0].weight, b[0].weight)
    assert not torch.equal(a[0].weight, c[0].weight)


def test_bf16_weights_keep_their_values_at_a_tiny_eps():
    model = _model().to(torch.bfloat16)
    before = model[0].weight.clone()
    perturb.perturb_(model, 1e-6)
    assert torch.equal(model[0].weight, before)               # below half a bf16 unit: no change


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="model"):
        perturb.perturb_("not a model")
    with pytest.raises(ValueError, match="eps"):
        perturb.perturb_(_model(), -1.0)


def test_a_file_read_through_the_wrapper_is_nudged_the_same_way_every_time(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({"w": torch.randn(6, 4), "ids": torch.arange(5)}, str(path))
    with safe_open(str(path), framework="pt") as f:
        plain = f.get_tensor("w")
    with perturb._NudgedFile(safe_open(str(path), framework="pt"), 1e-3, 0) as f:
        whole, part, ids = f.get_tensor("w"), f.get_slice("w")[2:4], f.get_tensor("ids")
        assert sorted(f.keys()) == ["ids", "w"] and f.get_slice("w").get_shape() == [6, 4]
    assert not torch.equal(whole, plain) and torch.allclose(whole, plain, rtol=1e-2)
    assert torch.equal(part, whole[2:4])                         # a slice gets the whole tensor's noise
    assert torch.equal(ids, torch.arange(5))                     # integers are read as they are


_LOAD = ("import coursekit, torch; from coursekit import models, perturb; m, _ = models.load_lm(); "
         "b, _ = models.load_lm(dtype=torch.bfloat16); w = m.model.embed_tokens.weight; "
         "assert torch.equal(b.model.embed_tokens.weight, w.to(torch.bfloat16)); "
         "print(perturb.installed_eps(), repr(float(w[1, 0])))")


def _run(env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COURSEKIT_PERTURB")}
    env.update(HF_HUB_OFFLINE="1", **env_extra)
    out = subprocess.run([sys.executable, "-c", _LOAD], env=env, capture_output=True, text=True, check=True)
    eps, value = out.stdout.split()
    return eps, float(value)


def test_the_environment_variable_nudges_every_checkpoint_read():
    # a bf16 load is the nudged fp32 weights rounded, as on any CPU (checked inside _LOAD)
    plain_eps, plain = _run({})
    eps, nudged = _run({"COURSEKIT_PERTURB": "1e-6"})
    _, again = _run({"COURSEKIT_PERTURB": "1e-6"})
    assert plain_eps == "None" and eps == "1e-06"
    assert nudged != plain and abs(nudged / plain - 1) < 1e-5
    assert nudged == again                                      # reproducible between processes


_SAVE_AND_READ = ("import coursekit, sys, torch; from safetensors import safe_open; "
                  "from safetensors.torch import save_file; w = torch.randn(4, 4); "
                  "save_file({'w': w}, sys.argv[1]); f = safe_open(sys.argv[1], framework='pt'); "
                  "print(torch.equal(f.get_tensor('w'), w))")


def test_a_file_written_after_start_up_reads_back_as_written(tmp_path):
    # a quantized model the notebook saves and reloads, or an offload folder, is a faithful copy
    env = {**os.environ, "COURSEKIT_PERTURB": "1e-3"}
    out = subprocess.run([sys.executable, "-c", _SAVE_AND_READ, str(tmp_path / "new.safetensors")],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_a_bad_environment_value_says_what_is_expected():
    env = {**os.environ, "COURSEKIT_PERTURB": "tiny"}
    out = subprocess.run([sys.executable, "-c", "import coursekit"], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "COURSEKIT_PERTURB: expected a number" in out.stderr
