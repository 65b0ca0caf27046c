"""Exercises of notebook 14: the references pass, plausible mistakes fail, and the byte count is the
exporter's own."""
import itertools

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from coursekit import gguf_export
from coursekit.exercises import evaluate, get_exercise, list_exercises, reset_attempts
from coursekit.exercises import nb14_capstone_quantize_a_real_llm as nb14
from coursekit.exercises.spec import exercises_in


@pytest.fixture(autouse=True)
def fresh_kernel():
    reset_attempts()


# the exercises with one right answer per hidden case; 14.capstone, a project judged by rules, is
# tested in test_grading_project.py (and its reference in test_exercises.py)
IDS = [e.id for e in exercises_in(nb14) if e.project is None]


def test_registered():
    assert IDS == ["14.gguf_bytes", "14.choose_upgrades"]
    assert [e.id for e in list_exercises("14")] == [*IDS, "14.capstone"]
    assert "coursekit.gguf_export.predicted_bytes" in get_exercise("14.gguf_bytes").forbid


@pytest.mark.parametrize("exercise_id", IDS)
def test_reference_passes(exercise_id):
    assert evaluate(exercise_id, get_exercise(exercise_id).reference).status == "passed"


def _per_weight(shapes, types):            # bits per weight times weights: forgets whole blocks
    bits = {"f32": 32, "f16": 16, "q8_0": 8.5, "q4_0": 4.5, "q4_1": 5, "mxfp4": 4.25}
    return sum(round(bits[types[k]] * torch.tensor(s).prod().item() / 8) for k, s in shapes.items())


def _greedy(options, spare):              # best gain per byte first: not optimal
    chosen, left = [], spare
    for name, (cost, gain) in sorted(options.items(), key=lambda kv: -kv[1][1] / kv[1][0]):
        if gain > 0 and cost <= left:
            chosen.append(name)
            left -= cost
    return sorted(chosen)


WRONG = {
    "14.gguf_bytes": [lambda shapes, types: sum(2 * torch.tensor(s).prod().item() for s in shapes.values()),
                      lambda shapes, types: nb14.gguf_bytes(shapes, {k: "q4_0" if v == "q4_1" else v
                                                                     for k, v in types.items()})],
    "14.choose_upgrades": [_greedy,
                           lambda options, spare: sorted(n for n, (c, g) in options.items() if c <= spare and g > 0)],
}


@pytest.mark.parametrize("exercise_id", IDS)
def test_plausible_mistakes_fail(exercise_id):
    for wrong in WRONG[exercise_id]:
        assert evaluate(exercise_id, wrong).status == "failed", wrong


def test_byte_count_is_the_exporters():
    """The reference counts what export_gguf writes (predicted_bytes, itself checked against files)."""
    model = LlamaForCausalLM(LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True))
    shapes = gguf_export.tensor_shapes(model)
    for fmt in ("f16", "q8_0", "q4_0", "q4_1", "mxfp4", {"blk.1.*": "q4_1", "*": "q8_0"}):
        types = gguf_export.tensor_types(model, fmt)
        assert nb14.gguf_bytes(shapes, types) == sum(gguf_export.predicted_bytes(model, fmt).values()), fmt


def test_choose_upgrades_is_the_best_affordable_set():
    g = torch.Generator().manual_seed(14)
    for _ in range(30):
        options = {f"k{i}": (int(torch.randint(1, 50, (1,), generator=g)), float(torch.rand(1, generator=g)) - 0.2)
                   for i in range(6)}
        spare = int(torch.randint(0, 120, (1,), generator=g))
        chosen = nb14.choose_upgrades(options, spare)
        assert sum(options[n][0] for n in chosen) <= spare
        best = max((sum(options[n][1] for n in c) for r in range(7) for c in itertools.combinations(options, r)
                    if sum(options[n][0] for n in c) <= spare), default=0.0)
        assert sum(options[n][1] for n in chosen) == pytest.approx(max(best, 0.0))
