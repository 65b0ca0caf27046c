"""The package's shape (issue 26): short modules, the public names of DESIGN.md, and imports that
go one way.

The layout is read by people before they open a file, so it is checked like code: no module grows
past what a learner reads in a sitting, every documented name stays importable where DESIGN.md says
it is, and no two modules import each other (a cycle hides which idea builds on which).
"""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "coursekit"
MAX_LINES = 450

#: DESIGN.md, "Public names", as far as they exist in this tree,
#: plus every plots.<name> a notebook, widget or test calls.
PUBLIC_NAMES = {
    "coursekit.quant": ["quantize", "QTensor", "quantization_error", "fake_quantize"],
    "coursekit.packing": ["pack", "unpack"],
    "coursekit.memory": ["model_nbytes"],
    "coursekit.layers": ["W8A16Linear", "replace_linear"],
    "coursekit.models": ["load_encoder", "load_lm", "perplexity", "generate", "SMOLLM2", "training_text",
                         "heldout_text", "get_device", "device_info", "model_device", "DummyModel"],
    "coursekit.exercises": ["check"],
    "coursekit.cli": ["main"],
    "coursekit.kernels": ["Int8WeightLinear", "Int4WeightLinear", "cpu_features", "llc_bytes",
                          "INT4_GROUP_SIZES", "ASSUMED_LLC_BYTES", "interleaved_median_ms", "median_ms"],
    "coursekit.kernels.cpu": ["cpu_features", "cpu_flags", "llc_bytes", "CPUFeatures"],
    "coursekit.ptq": ["calibrate", "gptq", "awq", "smoothquant"],
    "coursekit.formats": ["roundtrip", "encode", "decode", "bits_per_weight", "nf4_levels"],
    "coursekit.gguf_export": ["export_gguf", "tensor_types", "predicted_bytes"],
    "coursekit.llamacpp": ["available", "perplexity", "generate", "tokenize"],
    "coursekit.qat": ["qat_finetune", "to_fake_quant", "to_learned_scale", "to_real_quant", "ptq"],
    "coursekit.plots": [
        "contrast_ratio", "text_color_on", "error_vs_bits", "plot_bars", "plot_bit_fields", "plot_bit_layout",
        "plot_error_per_row", "plot_error_per_layer", "plot_error_vs_bits", "plot_error_vs_bits_per_weight",
        "plot_error_vs_granularity", "plot_grids_on_histogram", "plot_heatmaps", "plot_histogram_with_grid",
        "plot_lines", "plot_memory_bars", "plot_memory_traces", "plot_outlier_channels",
        "plot_quantization_error", "plot_roofline", "plot_size_vs_quality", "plot_time_vs_floor"],
    # the submodules of the packages, as notebooks and tests import them
    "coursekit.models.agreement": ["modern_sentences"],
    "coursekit.models.corpus": ["ASSETS"],
    "coursekit.models.smollm2": ["MODEL_CARD"],
    "coursekit.models.evaluation": ["SlicePerplexity"],
    "coursekit.kvcache": ["kv_bytes", "QuantizedKVCache"],
    "coursekit.models.encoder": ["embed"],
}


def _module_files():
    return sorted(p for p in PACKAGE.rglob("*.py") if "assets" not in p.parts)


def _module_name(path: Path) -> str:
    parts = ("coursekit",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in _module_files()}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _imports(name: str, top_level_only: bool = True) -> set:
    """The coursekit modules ``name`` imports: at module level (what runs on import), or anywhere.

    ``from . import x`` counts as the submodule x where there is one, else as the package itself.
    """
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    if top_level_only:
        nodes, stack = [], list(tree.body)
        while stack:     # module level, including if/try blocks, never function or class bodies
            node = stack.pop()
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                nodes.append(node)
            elif isinstance(node, (ast.If, ast.Try)):
                stack.extend(node.body + node.orelse + getattr(node, "finalbody", [])
                             + [s for h in getattr(node, "handlers", []) for s in h.body])
    else:
        nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    package = name if _is_package(name) else name.rsplit(".", 1)[0]
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in MODULES)
            continue
        if node.level:
            base = package.split(".")
            base = base[:len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if target not in MODULES:
            continue
        subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES]
        found.update(subs)
        if len(subs) < len(node.names):
            found.add(target)
    found.discard(name)
    return found


def _graph() -> dict:
    """Module -> the modules its import runs: each import, plus the packages above it that the
    importer is not already inside (importing coursekit.models.lm runs coursekit/models/__init__)."""
    graph = {}
    for name in MODULES:
        edges = set()
        for target in _imports(name):
            parts = target.split(".")
            for k in range(2, len(parts) + 1):
                parent = ".".join(parts[:k])
                if not (name == parent or name.startswith(parent + ".")):
                    edges.add(parent)
        graph[name] = edges
    return graph


def _cycles(graph: dict) -> list:
    """Strongly connected components of more than one module (Tarjan), each a sorted list."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


# --------------------------------------------------------------------------- the tests
def test_no_module_is_longer_than_a_sitting():
    long = {name: n for name, path in MODULES.items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by concept): {long}"


@pytest.mark.parametrize("module", sorted(PUBLIC_NAMES))
def test_public_names_import(module):
    mod = importlib.import_module(module)
    missing = [n for n in PUBLIC_NAMES[module] if not hasattr(mod, n)]
    assert not missing, f"{module} lost {missing}"


def test_the_packages_are_packages():
    for name in ("coursekit.models", "coursekit.kernels", "coursekit.plots"):
        assert _is_package(name), name
    for old in ("lm", "encoder", "smollm2", "evaluation", "corpus", "dummy_model", "hub", "devices",
                "agreement", "kernels", "plots", "models"):
        assert not (PACKAGE / f"{old}.py").exists(), f"coursekit/{old}.py is back beside its package"


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, f"import cycles among coursekit modules: {cycles}"


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_devices_reads_cpu_flags_from_kernels_cpu_only():
    kernels = {m for m in _imports("coursekit.models.devices", top_level_only=False)
               if m == "coursekit.kernels" or m.startswith("coursekit.kernels.")}
    assert kernels <= {"coursekit.kernels.cpu"}, kernels


def test_reading_the_device_loads_no_model_library():
    code = ("import sys, coursekit.models.devices as d; d.device_info('cpu'); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'transformers', 'optimum', 'matplotlib'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_qat_does_not_import_models():
    imported = _imports("coursekit.qat", top_level_only=False)
    assert not any(m == "coursekit.models" or m.startswith("coursekit.models.") for m in imported), imported


def test_assets_are_found_from_the_models_package():
    from coursekit.models import corpus, lm, smollm2
    assert corpus.ASSETS == PACKAGE / "assets" and corpus.TRAIN_FILE.is_file()
    assert (lm.TINY_LM_DIR / "config.json").is_file() and smollm2.MODEL_CARD.is_file()
