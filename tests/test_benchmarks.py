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
