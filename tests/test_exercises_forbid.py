"""No exercise can be passed by calling the coursekit function that computes its answer.

The grader scores 0 a learner's function that calls one of its exercise's `forbid` names (see
coursekit/grading/forbid.py, which catches a function by its code, under any name it is reached by).
These tests walk every exercise spec and every public function of coursekit (the exercise specs
themselves are masked while a submission is graded, so they do not count) and fail when an
exercise's answer is reachable under a public name that its spec does not forbid.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import types

import pytest

import coursekit
from coursekit.exercises import list_exercises
from coursekit.grading.forbid import targets

# The twins by logic: public functions that compute an exercise's answer under another name. Those
# with the exercise's own name are found without being listed.
TWINS = {
    "01.twos_complement_bits": ["coursekit.dtypes.int_to_bits"],
    "01.decode_signed": ["coursekit.dtypes.bits_to_int"],
    "03.scale_and_zero_point": ["coursekit.quant.qparams_from_minmax"],
    "03.mse": ["coursekit.quant.quantization_error"],
    "05.symmetric_quantize": ["coursekit.quant.linear_quantize"],
    "06.per_channel_scales": ["coursekit.layers.int8_per_channel"],
    "06.per_group_dequantize": ["coursekit.quant.linear_dequantize"],
    "07.int8_codes": ["coursekit.layers.int8_per_channel"],
    "07.w8a16_forward": ["coursekit.layers.W8A16Linear.forward"],
    "08.pack_2bit": ["coursekit.packing.pack"],
    "08.unpack_2bit": ["coursekit.packing.unpack"],
    "08.unpack_int4": ["coursekit.packing.unpack", "coursekit.packing.to_signed"],
    "09.fake_quant_symmetric": ["coursekit.quant.fake_quantize"],
    "11.outlier_split_matmul": ["coursekit.ptq.llm_int8.Int8OutlierLinear.forward"],
    "12.decode_e2m1": ["coursekit.formats.minifloat.e2m1_decode", "coursekit.formats.decode"],
    "12.mx_shared_exponent": ["coursekit.formats.minifloat.e8m0_from_amax", "coursekit.formats.encode",
                              "coursekit.formats.microscaling.ggml_e8m0"],
    "12.nf4_bits_per_weight": ["coursekit.formats.bits_per_weight"],
    "13.kv_bytes_per_token": ["coursekit.kvcache.kv_bytes"],
    "13.dequantize_keys": ["coursekit.quant.linear_dequantize"],
}

SKIPPED = ("coursekit.exercises", "coursekit.grading")   # masked / not the learner's library


def _key(code: types.CodeType) -> tuple[str, str]:
    return code.co_filename, getattr(code, "co_qualname", code.co_name)


def _unwrap(obj):
    while hasattr(obj, "__wrapped__"):
        obj = obj.__wrapped__
    return obj


def _public_functions() -> dict[str, dict[tuple[str, str], str]]:
    """{attribute name: {code key: a dotted public name}} over coursekit's modules and their classes."""
    found: dict[str, dict[tuple[str, str], str]] = {}

    def add(attr, obj, dotted):
        obj = _unwrap(obj.__func__ if isinstance(obj, (staticmethod, classmethod)) else obj)
        if isinstance(obj, types.FunctionType) and obj.__module__.startswith("coursekit"):
            found.setdefault(attr, {}).setdefault(_key(obj.__code__), dotted)

    modules = [coursekit] + [importlib.import_module(m.name)
                             for m in pkgutil.walk_packages(coursekit.__path__, "coursekit.")
                             if not m.name.startswith(SKIPPED)]
    for mod in modules:
        for attr, obj in vars(mod).items():
            if attr.startswith("_"):
                continue
            add(attr, obj, f"{mod.__name__}.{attr}")
            if inspect.isclass(obj) and obj.__module__.startswith("coursekit"):
                for meth, fn in vars(obj).items():
                    if not meth.startswith("_"):
                        add(meth, fn, f"{mod.__name__}.{attr}.{meth}")
    return found


@pytest.fixture(scope="module")
def public():
    return _public_functions()


@pytest.mark.parametrize("ex", list_exercises(), ids=lambda e: e.id)
def test_no_public_twin_of_an_answer_is_left_unforbidden(ex, public):
    forbidden = {(filename, qualname) for _d, _m, filename, qualname in targets(ex.forbid)}
    twins = dict(public.get(ex.name, {}))
    for dotted, _module, filename, qualname in targets(TWINS.get(ex.id, [])):
        twins[(filename, qualname)] = dotted
    missing = sorted(dotted for key, dotted in twins.items() if key not in forbidden)
    assert not missing, f"{ex.id}: forbid= lacks {missing}: a learner passes by calling it"


def test_the_walk_finds_the_same_named_twins(public):
    """The walk sees a same-named function however it is re-exported (ptq re-exports its methods)."""
    assert "coursekit.ptq.smoothquant.smoothing_scales" in public["smoothing_scales"].values() or \
        "coursekit.ptq.smoothing_scales" in public["smoothing_scales"].values()
    assert public["outlier_split_matmul"] and public["ste_round"] and public["to_unsigned"]


def test_twins_name_real_exercises():
    ids = {e.id for e in list_exercises()}
    assert set(TWINS) <= ids
