"""Sandboxed grading of learners' notebooks; scores computed in the grader's process only.

    from coursekit.grading import grade_batch, GradeOptions
    grade_batch(["submissions/"], "grades", GradeOptions(timeout=300, memory_mb=4096, jobs=2))

How one submission is graded, and where each step lives:

1. `batch`: which exercises. The notebook number NN comes from the file name
   (`03_quantization_theory.ipynb`, `alice_03_quantization_theory.ipynb`), or `notebook=` for
   the whole batch; the exercises are the spec's (`coursekit/exercises/nbNN_*.py`).
2. `preparation`: the grader builds each exercise's hidden cases and reference results in ITS
   process, once per batch.
3. `sandbox` + `_runner`: a child process with resource limits starts a fresh kernel in a fresh
   temporary folder (also HOME and TMPDIR), runs the submission's code cells (errors allowed),
   then one harness cell per exercise (`protocol`, `harness`): it loads the cases (`transport`:
   safetensors + JSON), calls the learner's function by name, and writes the outcomes in the
   same format, under a random nonce. `isolation`: the kernel runs under bubblewrap (no network,
   read-only system, nothing of other submissions, the output or the instructor's files in view),
   with the exercise specs masked (`masking`); `forbid`: tripwires on the coursekit functions an
   exercise forbids, armed while the learner's function runs.
4. `scoring`: the grader reads those files strictly and has `coursekit.exercises.verdict.judge`,
   the function `check()` uses, turn the outcomes into points (all or nothing, or per case when
   the spec says `partial=True`; 0 for a forbidden call), status and message. Nothing the kernel
   prints, and nothing `check` says there, counts.
5. `results`, `store`, `report`: the records, saved as each submission finishes (a batch that
   was interrupted resumes), then grades.csv, grades.json and a feedback page per submission;
   `summary` (summary.md/.png), `similarity` (similarity.csv), `gradebook` (--gradebook).
6. `shards`: `--shard I/N` grades a deterministic 1/N of the batch; `coursekit grade merge` joins
   the shards' folders into the reports one machine would have written.
"""

from .batch import UsageError, find_submissions, grade_batch, notebook_number, prepare_out
from .options import GradeOptions
from .preparation import load_registry
from .results import ExerciseResult, RunStatus, SubmissionResult

__all__ = ["grade_batch", "GradeOptions", "SubmissionResult", "ExerciseResult", "RunStatus", "UsageError",
           "load_registry", "notebook_number", "find_submissions", "prepare_out"]
