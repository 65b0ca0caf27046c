"""llama.cpp as an independent client of the course's GGUF files: perplexity, tokens and greedy text.

A GGUF file is only right if the tool people run reads it as we meant it. This module runs llama.cpp's
own command-line tools on a file and reports what they saw, so that the package's numbers can be
checked against a program that shares no code with it (``make llama-cpp`` builds them, once, into
``.llama.cpp/bin``; ``$COURSEKIT_LLAMA_CPP`` may name another folder that holds them).

* ``perplexity(path, slices)`` scores each slice exactly as ``coursekit.models.perplexity_slices``
  scores a model: one window per slice, its first ``tokens`` tokens, the first of them only context,
  no BOS token added. llama-perplexity's default scores only the second half of each window; its
  strided mode (``--ppl-stride``) with a stride of one less than the window scores every token after
  the first. That mode wants at least two windows of text, so the slice is followed by filler that
  ``--chunks 1`` never reads. Returns a ``SlicePerplexity``, so ``models.compare`` takes it
  (one llama.cpp process per slice: the model loads each time, in well under a second).
* ``tokenize(path, text)``: llama.cpp's token ids (to check they are the package's: a wrong
  ``tokenizer.ggml.pre`` changes them silently).
* ``generate(path, prompt, max_new_tokens)``: greedy continuation (llama-simple), the prompt
  included, like ``coursekit.models.generate``.
* ``tokens_per_second(path)``: how fast llama.cpp generates with the file, from its own timer.

What still differs is arithmetic, not reading: with Q8_0, Q4_0 or Q4_1 weights, llama.cpp's CPU kernels
round each matrix product's *input* to Q8_0 blocks too (its integer dot products need both sides in
8 bits). On the course LM that moves perplexity by 0.01 %; on SmolLM2 (30 layers) by 0.4 %.
``q8_activations(model)`` does the same rounding in the package and removes that bias (SmolLM2's
Q8_0 file on the 8 default slices: 49.137 plain, 49.326 with it, 49.352 in llama.cpp), but not the
noise: an activation near a rounding boundary goes one way in one engine and the other way in the
other, and through 30 layers single slices still differ by up to about 1 % (pooled over 4 slices:
0.4 % for Q8_0, 0.1 % for Q4_0). F16 files agree within 0.005 %.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import subprocess
import tempfile
from pathlib import Path

from .checks import check_instance, check_int, fail
from .models.evaluation import SLICE_TOKENS, SlicePerplexity

__all__ = ["ENV", "TOOLS", "LlamaCppNotBuiltError", "bin_dir", "available", "tool", "tokenize",
           "perplexity", "generate", "tokens_per_second", "q8_activations"]

#: Environment variable: a folder holding llama.cpp's tools (default: the repository's .llama.cpp/bin).
ENV = "COURSEKIT_LLAMA_CPP"
TOOLS = ("llama-perplexity", "llama-simple", "llama-completion", "llama-tokenize")
_BUILT = Path(__file__).resolve().parent.parent / ".llama.cpp" / "bin"


class LlamaCppNotBuiltError(FileNotFoundError):
    """llama.cpp's tools are not where coursekit looks for them."""


def bin_dir() -> Path:
    """The folder coursekit takes llama.cpp's tools from: ``$COURSEKIT_LLAMA_CPP``, else .llama.cpp/bin."""
    env = os.environ.get(ENV, "").strip()
    return Path(env).expanduser() if env else _BUILT


def available() -> bool:
    """True when every tool is built (tests and notebook cells that need llama.cpp check this)."""
    return all(os.access(bin_dir() / t, os.X_OK) for t in TOOLS)


def tool(name: str) -> Path:
    """The path of one of llama.cpp's tools; raises LlamaCppNotBuiltError saying how to build it."""
    path = bin_dir() / name
    if not os.access(path, os.X_OK):
        where = f"${ENV} = {os.environ[ENV]!r}" if os.environ.get(ENV, "").strip() else str(_BUILT)
        raise LlamaCppNotBuiltError(
            f"llama.cpp is not built: {name} is not in {where}. Run `make llama-cpp` in the course "
            f"repository (about 6 CPU-minutes, once), or set {ENV} to a folder with {', '.join(TOOLS)}.")
    return path


def _check_file(path) -> str:
    check_instance(path, "path", (str, os.PathLike), "the path of a .gguf file")
    if not os.path.isfile(path):
        fail("path", "an existing .gguf file", repr(os.fspath(path)), FileNotFoundError)
    return os.fspath(path)


def _run(args, what: str) -> subprocess.CompletedProcess:
    done = subprocess.run([a if isinstance(a, str) else str(a) for a in args], capture_output=True, text=True, errors="replace")
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise RuntimeError(f"{what} failed (exit code {done.returncode}):\n{tail}")
    return done


def _threads(threads) -> int:
    if threads is None:
        threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or os.cpu_count() or 1
    return check_int(threads, "threads", low=1)


def _tokenize_file(path: str, text_file: str) -> list:
    done = _run([tool("llama-tokenize"), "-m", path, "-f", text_file, "--ids", "--no-bos", "--log-disable"],
                "llama-tokenize")
    found = re.findall(r"\[([\d,\s]*)\]", done.stdout)
    if not found:
        raise RuntimeError(f"llama-tokenize printed no token ids: {done.stdout[-300:]!r}")
    return [int(t) for t in found[-1].replace(",", " ").split()]


def tokenize(path, text: str) -> list:
    """llama.cpp's token ids of ``text`` with the vocabulary of the GGUF file ``path`` (no BOS added)."""
    path = _check_file(path)
    check_instance(text, "text", str, "a str")
    with tempfile.TemporaryDirectory(prefix="coursekit-llamacpp-") as tmp:
        text_file = os.path.join(tmp, "text.txt")
        Path(text_file).write_text(text, encoding="utf-8")
        return _tokenize_file(path, text_file)


def perplexity(path, slices, tokens: int = SLICE_TOKENS, threads: int | None = None) -> SlicePerplexity:
    """Perplexity of the GGUF file ``path`` in llama.cpp, on each slice and pooled.

    Scored as ``coursekit.models.perplexity_slices(model, tokenizer, slices, tokens)`` scores the
    model: each slice (a str, or a list of them, e.g. ``models.heldout_slices(tokenizer)``) is one
    window of its first ``tokens`` tokens, every token after the first is scored, and no BOS token
    is put in front. ``tokens`` must be a multiple of 256 (llama.cpp rounds its context up to one;
    the course's slices are 512). ``threads``: llama.cpp's threads (default: $OMP_NUM_THREADS, else
    every core). llama.cpp prints each slice's perplexity to 4 decimals (a relative 1e-5 here).
    """
    path = _check_file(path)
    if isinstance(slices, str):
        slices = [slices]
    if not isinstance(slices, (list, tuple)) or not slices or not all(isinstance(s, str) and s.strip()
                                                                       for s in slices):
        fail("slices", "a non-empty str or a non-empty list of them (e.g. heldout_slices(tokenizer))",
             type(slices).__name__, TypeError)
    window = check_int(tokens, "tokens", low=256)
    if window % 256:
        fail("tokens", "a multiple of 256 (llama.cpp rounds its context up to one)", window)
    threads = _threads(threads)
    ppl_tool = tool("llama-perplexity")
    # llama-perplexity --ppl-stride S widens the context by S // 2: ask for the rest, so that the
    # window is `window` tokens, and S = window - 1 scores all of them after the first. The batch
    # must stay under two contexts, or the tool runs several windows side by side.
    stride = window - 1
    ctx = window - stride // 2
    nll = []
    with tempfile.TemporaryDirectory(prefix="coursekit-llamacpp-") as tmp:
        text_file = os.path.join(tmp, "slice.txt")
        for k, text in enumerate(slices):
            Path(text_file).write_text(text, encoding="utf-8")
            n = len(_tokenize_file(path, text_file))
            if n < window:
                fail(f"slices[{k}]", f"at least {window} tokens (llama.cpp's count)", n)
            # the strided mode wants two windows of text: filler after the slice, never read
            Path(text_file).write_text(text + "\n\n" + text + "\n\n" + text, encoding="utf-8")
            done = _run([ppl_tool, "-m", path, "-f", text_file, "-c", ctx, "-b", window, "--ppl-stride", stride,
                         "--chunks", 1, "-t", threads, "--no-warmup",
                         "--override-kv", "tokenizer.ggml.add_bos_token=bool:false"],
                        f"llama-perplexity on slices[{k}]")
            log = done.stdout + done.stderr
            chunk = re.search(r"Calculation chunk = (\d+)", log)
            found = re.search(r"\[1\](\d+(?:\.\d+)?)", log)
            if not (chunk and found and int(chunk.group(1)) == window):
                raise RuntimeError(f"llama-perplexity did not score one window of {window} tokens on "
                                   f"slices[{k}]:\n{done.stdout.strip()[-300:]}\n"
                                   + "\n".join(done.stderr.strip().splitlines()[-6:]))
            nll.append(math.log(float(found.group(1))))
    return SlicePerplexity(slices=tuple(math.exp(v) for v in nll), nll=tuple(nll),
                           tokens=(window - 1,) * len(nll), pooled=math.exp(sum(nll) / len(nll)))


def _simple(path, prompt, new_tokens: int) -> subprocess.CompletedProcess:
    """llama-simple's greedy run of ``new_tokens`` tokens after ``prompt`` (arguments checked)."""
    path = _check_file(path)
    check_instance(prompt, "prompt", str, "a non-empty str")
    if not prompt.strip():
        fail("prompt", "a non-empty str", repr(prompt))
    return _run([tool("llama-simple"), "-m", path, "-n", new_tokens, prompt], "llama-simple")


def generate(path, prompt: str, max_new_tokens: int = 30) -> str:
    """Greedy continuation of ``prompt`` by llama.cpp (llama-simple); returns prompt + continuation,
    stopping early at an end-of-generation token, like ``coursekit.models.generate``."""
    out = _simple(path, prompt, check_int(max_new_tokens, "max_new_tokens", low=1)).stdout
    return out[:-1] if out.endswith("\n") else out


def tokens_per_second(path, prompt: str = "The history of the printing press", new_tokens: int = 64) -> float:
    """Tokens per second of greedy generation with the GGUF file ``path`` in llama.cpp (llama-simple),
    the prompt excluded: llama.cpp's own timer of its generation steps ("eval time"), so loading the
    file and reading the prompt do not count. Generation stops early at an end token; the rate is
    over the steps it ran. A timing: it changes from run to run and with what else the machine does."""
    done = _simple(path, prompt, check_int(new_tokens, "new_tokens", low=2))
    found = re.search(r"\beval time =\s*([\d.]+) ms /\s*(\d+) runs", done.stderr + done.stdout)
    if not found or int(found.group(2)) == 0:
        raise RuntimeError(f"llama-simple printed no generation timing: {done.stderr.strip()[-300:]!r}")
    return int(found.group(2)) / (float(found.group(1)) / 1e3)


@contextlib.contextmanager
def q8_activations(model):
    """Inside the block, every ``nn.Linear`` of ``model`` rounds its input to Q8_0 blocks of 32 along
    the input features (absmax / 127 scale, as ``coursekit.formats``' 'q8_0'), as llama.cpp's CPU
    kernels do before multiplying by Q8_0, Q4_0 or Q4_1 weights (Q4_1's partner, Q8_1, has the same
    codes and scale, plus their sum). Not for F16 files (llama.cpp rounds those
    inputs to F16 only)."""
    import torch

    from . import formats

    def round_input(module, args):
        x = args[0]
        rounded = formats.roundtrip(x.reshape(-1, x.shape[-1]), "q8_0").reshape(x.shape)
        return (rounded.to(device=x.device, dtype=x.dtype),) + tuple(args[1:])

    hooks = [m.register_forward_pre_hook(round_input) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    try:
        yield model
    finally:
        for h in hooks:
            h.remove()
