"""Exercises of notebook 11: the reference passes, plausible mistakes fail, the references agree with coursekit.ptq."""
import pytest
import torch

from coursekit import ptq
from coursekit.exercises import evaluate, get_exercise, list_exercises, reset_attempts
from coursekit.exercises import nb11_outliers_and_smarter_rounding as nb11
from coursekit.exercises.spec import exercises_in
from coursekit.ptq import grid as G
from coursekit.ptq.gptq import gptq_weight, prepare_hessian


@pytest.fixture(autouse=True)
def fresh_kernel():
    """No failed attempts counted yet, as in a fresh kernel."""
    reset_attempts()


NB11 = exercises_in(nb11)


def test_registered():
    assert [e.id for e in NB11] == ["11.smoothing_scales", "11.gptq_column_update", "11.outlier_split_matmul",
                                    "11.which_change_matters"]
    assert {e.id for e in list_exercises("11")} == {e.id for e in NB11}


def test_references_pass():
    for ex in NB11:
        assert evaluate(ex.id, getattr(nb11, ex.id.split(".")[1])).status == "passed"


def _column_without_feedback(w, u, i, scale, zero_point, bits):
    w = w.clone()
    q = torch.clamp(torch.round(w[:, i] / scale) + zero_point, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    w[:, i] = (q - zero_point) * scale
    return w


def _error_not_divided(w, u, i, scale, zero_point, bits):
    w = w.clone()
    q = torch.clamp(torch.round(w[:, i] / scale) + zero_point, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    deq = (q - zero_point) * scale
    w[:, i + 1:] -= (w[:, i] - deq)[:, None] * u[i, i + 1:][None, :]
    w[:, i] = deq
    return w


def _split_positive_only(x, w, threshold):
    mask = (x > threshold).any(dim=0)                   # forgets negative outliers
    return nb11.outlier_split_matmul(x * 1, w, threshold) if mask.equal((x.abs() > threshold).any(0)) \
        else x[:, mask] @ w[:, mask].T + (x[:, ~mask] @ w[:, ~mask].T)


WRONG = {
    "11.smoothing_scales": [
        lambda a, w, alpha: a ** alpha / w ** alpha,                       # same exponent on both sides
        lambda a, w, alpha: a.clamp(min=1e-5) ** alpha / w.clamp(min=1e-5) ** (1 - alpha),   # dead channels
        lambda a, w, alpha: w ** (1 - alpha) / a ** alpha,                 # upside down
    ],
    "11.gptq_column_update": [_column_without_feedback, _error_not_divided],
    "11.outlier_split_matmul": [
        lambda x, w, t: x @ w.T,                                           # no quantization at all
        lambda x, w, t: ptq.outlier_split_matmul(x, w, 1e9),               # everything int8
        _split_positive_only,
    ],
}


@pytest.mark.parametrize("exercise_id,wrong", [(k, w) for k, ws in WRONG.items() for w in ws])
def test_plausible_mistake_fails(exercise_id, wrong):
    r = evaluate(exercise_id, wrong)
    assert r.status in ("failed", "error"), r.message


def test_which_change_matters_never_reveals_the_answer():
    for wrong in ("a", "c", "d"):
        r = evaluate("11.which_change_matters", lambda w=wrong: w)
        assert r.status == "failed" and "'b'" not in r.message, r.message
    assert evaluate("11.which_change_matters", "b").passed


def test_hints_are_progressive():
    for ex in NB11:
        assert len(ex.hints) == 3


def test_references_agree_with_the_library():
    for case in get_exercise("11.smoothing_scales").cases():
        torch.testing.assert_close(nb11.smoothing_scales(*case), ptq.smoothing_scales(*case))
    for case in get_exercise("11.outlier_split_matmul").cases():
        torch.testing.assert_close(nb11.outlier_split_matmul(*case), ptq.outlier_split_matmul(*case))


def test_column_updates_in_sequence_are_gptq():
    """Sweeping the exercise's update over every column gives the codes of ptq.gptq_weight."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 10, generator=g) @ (torch.eye(10) + 0.3 * torch.randn(10, 10, generator=g))
    w = torch.randn(5, 10, generator=g)
    h = x.T @ x / 128
    codes, scale, zero = gptq_weight(w, h, bits=3, damp=0.01)
    _, _, u = prepare_hessian(h, w.double(), 0.01)
    s, z = G.grid(w, 3, None)
    cur = w.clone()
    for i in range(10):
        cur = nb11.gptq_column_update(cur, u.float(), i, s[:, 0], z[:, 0], 3)
    torch.testing.assert_close(cur, (codes - zero) * scale, atol=1e-4, rtol=1e-4)


def test_cases_cover_the_edges():
    split = get_exercise("11.outlier_split_matmul").cases()
    masks = [(x.abs() > t).any(0) for x, _, t in split]
    assert any(not m.any() for m in masks) and any(m.all() for m in masks)
    assert any(((x < -t) & (x.abs() > t)).any() for x, _, t in split)          # a negative outlier
    smooth = get_exercise("11.smoothing_scales").cases()
    assert any((a == 0).any() or (w == 0).any() for a, w, _ in smooth)
    assert {alpha for *_, alpha in smooth} >= {0.0, 1.0}
