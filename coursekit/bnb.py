"""Load the course LM through bitsandbytes, the way a Hub model is loaded in 8-bit or NF4.

``load_lm_bitsandbytes("int8")`` is transformers' ``BitsAndBytesConfig(load_in_8bit=True)``
(LLM.int8(): every ``nn.Linear`` of the decoder becomes ``bnb.nn.Linear8bitLt`` with int8 weights
and one float32 scale per output row); ``load_lm_bitsandbytes("nf4")`` is
``BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")`` (``bnb.nn.Linear4bit``:
NF4 codes two per byte, one float32 absmax per 64 weights; ``coursekit.formats`` computes the very
same codes). The embedding and the tied output layer stay float32, as transformers leaves them.

bitsandbytes >= 0.49 runs both on the CPU. It also talks on stderr: importing it logs "Failed to
load CPU gemm_4bit_forward from kernels-community ..." when the optional ``kernels`` package is
missing (the 4-bit matmul then uses its plain PyTorch path), and every 8-bit forward pass logs
"MatMul8bitLt: inputs will be cast from torch.float32 to float16". Neither is an error, and a
notebook that compares its outputs must not store them: ``quiet_bitsandbytes()`` raises the level
of bitsandbytes' loggers to ERROR, before the first import.
"""

from __future__ import annotations

import logging

import torch

from . import checks

__all__ = ["BNB_MODES", "quiet_bitsandbytes", "bnb_config", "load_lm_bitsandbytes"]

BNB_MODES = ("int8", "nf4", "fp4")


def quiet_bitsandbytes() -> None:
    """Keep bitsandbytes' informational warnings (see the module docstring) off stderr."""
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def bnb_config(mode: str = "nf4"):
    """The ``transformers.BitsAndBytesConfig`` of ``mode``: 'int8', 'nf4' or 'fp4'."""
    checks.check_choice(mode, "mode", BNB_MODES)
    quiet_bitsandbytes()
    from transformers import BitsAndBytesConfig
    if mode == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=mode, bnb_4bit_compute_dtype=torch.float32)


def load_lm_bitsandbytes(mode: str = "nf4", name: str | None = None, device=None):
    """Load the course LM (or ``name``) quantized by bitsandbytes; returns ``(model, tokenizer)``.

    mode: 'int8' (``BitsAndBytesConfig(load_in_8bit=True)``), 'nf4' (``load_in_4bit=True,
    bnb_4bit_quant_type="nf4"``) or 'fp4' (bitsandbytes' own 4-bit float). name: as in
    ``coursekit.models.load_lm`` (None: the course's tiny Llama, offline). device: where the model
    goes, as a ``device_map``; None keeps transformers' choice (the CPU here, the GPU on Colab).

    The pair is the same as ``load_lm``'s, so ``perplexity(model, tokenizer)`` works unchanged.
    ``coursekit.memory.model_nbytes(model)`` counts the int8 / packed 4-bit weights and their
    scales; ``model.get_memory_footprint()`` counts the parameters only, so it misses the scales.
    bitsandbytes' stderr chatter is silenced (``quiet_bitsandbytes``).
    """
    checks.check_choice(mode, "mode", BNB_MODES)
    from .models import lm
    config = bnb_config(mode)
    lm.quiet_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer
    if name is None:
        path, local_only = str(lm.TINY_LM_DIR), True
    else:
        path, local_only = lm._check_lm_name(name, "name"), lm.local_files_only(name)
    kwargs = {} if device is None else {"device_map": {"": str(torch.device(device))}}
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=config, local_files_only=local_only,
                                                 **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer
