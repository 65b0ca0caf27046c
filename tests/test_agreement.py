"""The agreement yardstick prints statistics that hold between CPUs (issue: works on every machine)."""

import pytest
import torch

from coursekit.models import agreement as agr


def test_tail_mean_averages_the_worst_five_percent():
    values = torch.arange(100, dtype=torch.float32) / 100      # 0.00 .. 0.99
    assert agr.tail_mean(values) == pytest.approx((0.00 + 0.01 + 0.02 + 0.03 + 0.04) / 5)
    assert agr.tail_mean(torch.tensor([0.5, 0.9])) == pytest.approx(0.5)    # at least one value
    with pytest.raises(TypeError, match="values"):
        agr.tail_mean([0.5, 0.9])


def test_one_sentence_moving_barely_moves_the_printed_tail():
    # 256 cosines, the lowest one moves by 0.004 (what one int8 rounding flip did on another CPU):
    # the minimum follows it all the way, the printed worst-5 % mean by less than a printed unit
    g = torch.Generator().manual_seed(0)
    cos = 0.95 + 0.02 * torch.randn(256, generator=g)
    moved = cos.clone()
    moved[cos.argmin()] += 0.004
    assert float(moved.min() - cos.min()) > 0.0009
    assert abs(agr.tail_mean(moved) - agr.tail_mean(cos)) < 0.0005


def test_agreement_prints_the_tail_not_the_minimum():
    e = torch.nn.functional.normalize(torch.randn(64, 8, generator=torch.Generator().manual_seed(1)), dim=-1)
    noisy = torch.nn.functional.normalize(e + 0.1 * torch.randn(64, 8, generator=torch.Generator().manual_seed(2)),
                                          dim=-1)
    a = agr.agreement_of(noisy, e)
    cos = (noisy * e).sum(-1)
    assert a.worst_cosine == pytest.approx(float(cos.min()))
    assert a.worst_cosine <= a.tail_cosine <= a.mean_cosine
    text = str(a)
    assert f"worst 5% {a.tail_cosine:.2f} |" in text and "worst " + f"{a.worst_cosine:.3f}" not in text


def test_the_int8_activation_path_gives_the_same_bits_twice():
    """Two runs on one machine print the same text: W8A8 and LLM.int8() on the encoder give
    bit-identical embeddings on a second copy and with another thread count."""
    import copy

    from coursekit import models, ptq
    from coursekit.models.encoder import embed

    encoder, tok = models.load_encoder()
    sentences = agr.evaluation_sentences()[:64]
    calibration = ptq.calibrate(encoder, tok, agr.calibration_sentences(32))
    threads = torch.get_num_threads()
    try:
        for build in (lambda m: ptq.w8a8(m, calibration), lambda m: ptq.llm_int8(m)):
            runs = []
            for n in (1, 2):
                torch.set_num_threads(n)
                model = build(copy.deepcopy(encoder))
                runs.append(embed(model, tok, sentences, batch_size=32))
            assert torch.equal(runs[0], runs[1])
    finally:
        torch.set_num_threads(threads)
