"""The knobs of a grading batch: limits per submission, and how many run at once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GradeOptions:
    """Limits per submission. `timeout` is the wall time for running all of the notebook's cells;
    each exercise's hidden cases then get `exercise_timeout` more."""
    timeout: float = 600.0
    memory_mb: int = 4096
    jobs: int = 1
    exercise_timeout: float = 30.0
    file_mb: int = 256
    output_kb: int = 2000
    notebook: str | None = None
    startup_timeout: float = 60.0
    threads: int | None = None  # torch/OMP threads per kernel; default: the cores shared among jobs
    isolation: str = "auto"     # "auto" (bubblewrap when it can run), "bwrap" (required), "none"
    shard: tuple[int, int] | None = None   # (I, N): grade only the I-th of N shards (1-based)
    gradebook: str | None = None           # "canvas" | "moodle" | "csv": also write a gradebook file
    learner_pattern: str | None = None     # regex with a group (?P<learner>...) over the file's path

