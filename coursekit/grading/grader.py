"""The grader's former single module, kept so that `coursekit.grading.grader` imports still work.

The grader is split by concept now (see the package docstring): results, preparation, protocol,
harness, sandbox, scoring, submission, batch, store and report.
"""

from .batch import UsageError, find_submissions, grade_batch, notebook_number, prepare_out
from .options import GradeOptions
from .preparation import Prepared, load_registry, prepare
from .results import GRADER_VERSION, ExerciseResult, RunStatus, SubmissionResult

__all__ = ["grade_batch", "GradeOptions", "SubmissionResult", "ExerciseResult", "RunStatus", "UsageError",
           "load_registry", "notebook_number", "find_submissions", "prepare_out", "prepare", "Prepared",
           "GRADER_VERSION"]
