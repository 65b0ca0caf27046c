"""coursekit: the small library behind the quantization course notebooks.

Each module holds one idea of the course (README, "The repository"); the notebooks import from here so
that what a learner reads in a lesson is the idea itself, not plumbing.
"""

__version__ = "0.1.0"

# `make test-perturbed`: every model loaded from a file gets its weights nudged, to show that the
# notebooks' stored outputs survive another CPU's float kernels (coursekit/perturb.py says why).
from os import environ as _environ

if _environ.get("COURSEKIT_PERTURB"):
    from .perturb import install as _install_perturbation

    _install_perturbation()
