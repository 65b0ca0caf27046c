"""How a batch resumes: every result is saved as DIR/results/KEY.json as soon as it is graded.

Run the same command again after an interruption (or with more submissions) and a submission
whose bytes and grading setup (the fingerprint) match its stored result is not graded again.
"""

from __future__ import annotations

import json
from pathlib import Path

from .results import GRADER_VERSION, SubmissionResult


def load_previous(path: Path, sha: str, fingerprint: str) -> SubmissionResult | None:
    """The stored result at `path` if it is for these bytes and this setup; None otherwise."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("grader") == GRADER_VERSION and doc.get("sha256") == sha \
                and doc.get("fingerprint") == fingerprint:
            return SubmissionResult.from_json(doc)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def save(out: Path, key: str, result: SubmissionResult) -> None:
    """Write DIR/results/KEY.json atomically (a half-written file would never be reused)."""
    path = out / "results" / f"{key}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result.to_json(), indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
