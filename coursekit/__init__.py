"""coursekit: the small library behind the quantization course notebooks.

Each module holds one idea of the course (README, "The repository"); the notebooks import from here so
that what a learner reads in a lesson is the idea itself, not plumbing.
"""

__version__ = "0.1.0"
