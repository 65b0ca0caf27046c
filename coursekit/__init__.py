"""coursekit: the small library behind the quantization course notebooks.

Each module holds one idea of the course (see DESIGN.md); the notebooks import from here so
that what a learner reads in a lesson is the idea itself, not plumbing.
"""

__version__ = "0.1.0"

#: Where the course lives; the notebooks' Colab badges and setup cells point here.
COURSE_REPO = "https://github.com/quantization-course/quantization-course"
