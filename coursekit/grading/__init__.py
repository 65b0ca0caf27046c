"""Sandboxed grading of learners' notebooks; scores computed in the grader's process only.

    from coursekit.grading import grade_batch, GradeOptions
    grade_batch(["submissions/"], "grades", GradeOptions(timeout=300, memory_mb=4096, jobs=2))

See `grader` for how a submission is run and scored, `transport` for the safe (pickle-free)
format that carries cases in and results out, and `report` for what is written.
"""

from .grader import (ExerciseResult, GradeOptions, SubmissionResult, UsageError, grade_batch,
                     load_registry, notebook_number)

__all__ = ["grade_batch", "GradeOptions", "SubmissionResult", "ExerciseResult", "UsageError",
           "load_registry", "notebook_number"]
