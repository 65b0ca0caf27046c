"""What grading one submission produces: a run status, and a result per exercise.

These are the records of grades.json and of results/KEY.json (which is how a batch resumes).
Statuses are small string enums: they are written, and read back, as the plain strings
"ok", "timeout", "passed", ... so the files stay the same whatever the code calls them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from ..exercises.verdict import Status

#: Bump when a stored result must not be reused any more (results/KEY.json carry it).
GRADER_VERSION = "2"


class RunStatus(StrEnum):
    """How running the whole notebook went."""
    OK = "ok"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    ERROR = "error"        # a cell raised, or the kernel died
    INVALID = "invalid"    # not a readable notebook, or no exercise for it


@dataclass
class ExerciseResult:
    id: str
    points: float
    max_points: float
    status: Status
    message: str
    cases_passed: int = 0
    cases: int = 0
    hint: str = ""
    title: str = ""
    measures: dict = field(default_factory=dict)   # a project's measurements ({name: number})
    marks: dict = field(default_factory=dict)      # a project's reference points ({label: [x, y]})

    @classmethod
    def from_json(cls, doc: dict) -> "ExerciseResult":
        return cls(**{**doc, "status": Status(doc["status"])})


@dataclass
class SubmissionResult:
    submission: str
    path: str
    sha256: str
    notebook: str | None
    status: RunStatus
    status_message: str
    exercises: dict[str, ExerciseResult] = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    fingerprint: str = ""
    solutions: dict = field(default_factory=dict)   # exercise id -> [normalized hash, nodes] (similarity)
    reused: bool = False

    @property
    def total(self) -> float:
        return sum(e.points for e in self.exercises.values())

    @property
    def max_total(self) -> float:
        return sum(e.max_points for e in self.exercises.values())

    def to_json(self) -> dict:
        return {"grader": GRADER_VERSION, "submission": self.submission, "path": self.path,
                "sha256": self.sha256, "fingerprint": self.fingerprint, "notebook": self.notebook,
                "status": self.status, "status_message": self.status_message,
                "total": self.total, "max_total": self.max_total,
                "exercises": {k: vars(v) for k, v in self.exercises.items()}, "details": self.details,
                "solutions": self.solutions}

    @classmethod
    def from_json(cls, doc: dict) -> "SubmissionResult":
        return cls(submission=doc["submission"], path=doc["path"], sha256=doc["sha256"],
                   notebook=doc["notebook"], status=RunStatus(doc["status"]),
                   status_message=doc["status_message"],
                   exercises={k: ExerciseResult.from_json(v) for k, v in doc["exercises"].items()},
                   details=doc.get("details", {}), fingerprint=doc["fingerprint"],
                   solutions=doc.get("solutions", {}))
