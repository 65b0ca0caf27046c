"""The benchmark code runs and computes correctly on small sizes (its figures are not tested)."""
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from benchmarks import sizes, speed


def test_speed_section_small_and_identical_to_eager():
    r = speed.run(n=256, repeats=2)
    names = [row["name"] for row in r["rows"]]
    assert any("optimum-quanto qint8" in n for n in names) and any("amax" in n for n in names)
    assert all(r["identical_to_eager"].values())
    assert all(row["ms"] > 0 for row in r["rows"])
    assert "| quantizer |" in speed.to_markdown(r)


def test_memory_section_matches_theory_within_1_percent():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True)
    r = sizes.run({"tiny": LlamaForCausalLM(cfg).eval()})
    assert len(r["rows"]) == 8
    for row in r["rows"]:
        assert abs(row["rel_diff"]) < 0.01, row
    quanto8 = next(x for x in r["rows"] if x["variant"] == "optimum-quanto qint8")
    assert quanto8["get_memory_footprint"] > 1.5 * quanto8["model_nbytes"]   # it ignores quantization


def test_clipping_study_compares_weights_and_perplexity():
    from benchmarks import accuracy
    from coursekit import models
    model, tok = models.load_lm()
    r = accuracy.clipping_study(model, tok, max_tokens=256, n_slices=3)
    assert [row["format"] for row in r["rows"]] == ["int4 g128", "int2 g64"]
    for row in r["rows"]:
        # the search keeps min/max when nothing beats it, so the weight error can only go down
        assert row["mse"]["weight_mse"] <= row["minmax"]["weight_mse"]
        assert row["mse"]["weight_mse"] < row["minmax"]["weight_mse"]     # and here it does go down
        assert 1 < row["minmax"]["perplexity"] < 4096 and 1 < row["mse"]["perplexity"] < 4096
        assert len(row["mse"]["slice_perplexities"]) == 3 and 0 <= row["mse_wins"] <= 3
    assert 1 < r["fp32_perplexity"] < r["rows"][1]["minmax"]["perplexity"]  # 2-bit hurts
    md = accuracy.clipping_markdown(r)
    assert md.count("| int") == 2 and "Perplexity with MSE clipping: int4 g128: " in md


def test_latency_section_small_and_explains_itself():
    from benchmarks import latency
    r = latency.run(n=256, repeats=2)
    variants = [row["variant"] for row in r["rows"]]
    assert variants[0] == "fp32" and r["rows"][0]["x_fp32"] == 1.0
    assert "coursekit W4A16 (packed, g64)" in variants and "optimum-quanto qint8 weights + activations" in variants
    assert all(row["ms"] > 0 for row in r["rows"])
    md = latency.to_markdown(r)
    assert "**Slower than fp32 here:**" in md and "Why:" in md and "This CPU's relevant features" in md


def test_interleaved_timer_times_every_function_in_rounds():
    from benchmarks.timing import interleaved_median_ms
    calls = []
    ms = interleaved_median_ms({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3,
                               warmup=1)
    assert set(ms) == {"a", "b"} and all(v >= 0 for v in ms.values())
    assert calls == ["a", "b"] + ["a", "b"] * 3       # warm-up, then alternating rounds
