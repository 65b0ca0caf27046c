"""Masking: inside the sandbox, the exercise specs hold no reference solutions.

The spec files (`coursekit/exercises/nbNN_*.py`) are the reference solutions. Under isolation the
grader binds a masked copy of `coursekit/exercises/` over the real one: the machinery (`check`,
`spec`, `verdict`, `outcome`, `compare`) is copied as it is, and every spec module is replaced
by a stub that declares no exercise and answers any name with an AttributeError saying why. So
`from coursekit.exercises.nb03_quantization_theory import linear_quantize` fails, and
`check(...)` run by a submission's cells says it knows no such exercise (nothing it prints counts).
No compiled `__pycache__` is copied: it would hold the references' bytecode.

In the learner's own notebook nothing is masked: `check()` works as it always has.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .. import exercises as _exercises

STUB = '''"""Masked by coursekit's grader: the reference solutions of this notebook are not available
while a submission is being graded."""

MASKED = True


def __getattr__(name):
    raise AttributeError(f"{{name!r}} is masked: reference solutions are not available in the "
                         f"grading sandbox ({{__name__}})")
'''


def exercises_dir() -> Path:
    return Path(_exercises.__file__).resolve().parent


def is_spec(path: Path) -> bool:
    return path.suffix == ".py" and path.name.startswith("nb")


def build_masked(dest: Path) -> Path:
    """Write the masked copy of coursekit/exercises/ into DEST (created); return DEST."""
    dest.mkdir(parents=True, exist_ok=True)
    for src in sorted(exercises_dir().iterdir()):
        if src.name == "__pycache__" or not src.is_file():
            continue
        if is_spec(src):
            (dest / src.name).write_text(STUB.format(), encoding="utf-8")
        elif src.suffix == ".py":
            shutil.copyfile(src, dest / src.name)
    return dest
