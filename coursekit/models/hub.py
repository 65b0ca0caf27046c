"""The Hugging Face side of loading a model: offline by default, and silent.

The course's own models ship inside Python packages, so nothing here downloads on its own. Two
things still need care whenever transformers loads a model:

* ``quiet_transformers()``: notebooks compare their outputs strictly, so progress bars and info
  chatter on stderr would fail them. Call it before every ``from_pretrained``.
* ``local_files_only(name)`` and ``HubUnavailableError``: a learner may ask for a Hub model
  (``load_lm("HuggingFaceTB/SmolLM2-135M")``) with no network. We then look only on disk, and a
  miss becomes one error type that says what to do instead of a long transformers traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["HubUnavailableError", "quiet_transformers", "hub_offline", "local_files_only"]


class HubUnavailableError(OSError):
    """A Hub model was asked for but cannot be loaded (offline, or not in the local cache)."""


def quiet_transformers() -> None:
    """No progress bars or info chatter on stderr: notebooks compare their outputs strictly.

    The environment variables only work before huggingface_hub is first imported (optimum-quanto
    imports it early), so the libraries' own switches are flipped as well.
    """
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import huggingface_hub.utils
    import transformers.utils.logging as hf_logging
    huggingface_hub.utils.disable_progress_bars()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set now.

    huggingface_hub reads the variable once, at import; reading it here as well honours a
    learner who sets it later in the notebook.
    """
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def local_files_only(name: str) -> bool:
    """Whether ``name`` must be loaded from disk only: a local directory, or the Hub is off."""
    return hub_offline() or Path(name).is_dir()
