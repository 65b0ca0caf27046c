"""Beyond one machine: grade a deterministic 1/N of a batch, then merge the shards' folders.

    coursekit grade subs/ --out shard-3 --shard 3/8      # on each of 8 machines (I = 1..8)
    coursekit grade merge shard-1 ... shard-8 --out grades

Every shard lists the whole batch the same way (`find_submissions`, paths relative to the folder
the command runs in), sorts it by label and keeps every N-th submission starting at the I-th, so
the shards are disjoint, cover the batch, and differ in size by one at most. Each shard folder
gets `shard.json`: the whole batch in its order, the shard's part, the isolation it ran under.
`merge` checks that the folders are the N shards of one batch, reads their results/KEY.json and
writes the same grades.csv, grades.json, feedback/, summary and similarity report that one
machine grading the whole batch would have written. The scheduler (Slurm, Kubernetes, GitHub
Actions: see README) does the distribution; nothing here talks to other machines.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .isolation import Isolation
from .results import SubmissionResult

MANIFEST = "shard.json"
_SHARD = re.compile(r"^\s*([0-9]+)\s*/\s*([0-9]+)\s*$")


class ShardError(ValueError):
    """A --shard that is not I/N, or shard folders that do not make one batch."""


def parse(text: str) -> tuple[int, int]:
    """"I/N" -> (I, N), 1 <= I <= N."""
    m = _SHARD.match(str(text))
    if not m:
        raise ShardError(f"--shard takes I/N (e.g. 2/8, the 2nd of 8 shards), got {text!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= i <= n:
        raise ShardError(f"--shard {text}: I must be between 1 and N (N >= 1)")
    return i, n


def select(items: list, i: int, n: int) -> list:
    """The I-th of N shards of `items` (anything with a `.label`), in the batch's order."""
    order = sorted(range(len(items)), key=lambda k: items[k].label)
    mine = {k for pos, k in enumerate(order) if pos % n == i - 1}
    return [it for k, it in enumerate(items) if k in mine]


def write_manifest(out: Path, batch: list, mine: list, shard: tuple[int, int], isolation: Isolation) -> None:
    doc = {"shard": list(shard), "batch": [[it.label, it.key] for it in batch], "mine": [it.key for it in mine],
           "isolation": isolation.to_json()}
    (out / MANIFEST).write_text(json.dumps(doc, indent=1, ensure_ascii=False), encoding="utf-8")


def merge_rows(folders: list[Path]) -> tuple[list[tuple[str, SubmissionResult]], Isolation]:
    """The results of N shard folders, in the whole batch's order, and the isolation they ran under
    (isolated only when every shard was). Raises ShardError when the folders are not one batch."""
    docs = []
    for f in folders:
        try:
            docs.append((f, json.loads((f / MANIFEST).read_text(encoding="utf-8"))))
        except (OSError, ValueError) as exc:
            raise ShardError(f"{f} is not a shard folder (no readable {MANIFEST}: {exc})") from None
    n = docs[0][1]["shard"][1]
    batch = docs[0][1]["batch"]
    seen: dict[int, Path] = {}
    for f, d in docs:
        i, m = d["shard"]
        if m != n or d["batch"] != batch:
            raise ShardError(f"{f} is a shard of another batch (shard {i}/{m}, {len(d['batch'])} submissions)")
        if i in seen:
            raise ShardError(f"shard {i}/{n} given twice: {seen[i]} and {f}")
        seen[i] = f
    missing = sorted(set(range(1, n + 1)) - set(seen))
    if missing:
        raise ShardError(f"shards {', '.join(f'{i}/{n}' for i in missing)} are missing")
    found: dict[str, SubmissionResult] = {}
    for f, d in docs:
        for key in d["mine"]:
            try:
                found[key] = SubmissionResult.from_json(json.loads((f / "results" / f"{key}.json").read_text("utf-8")))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ShardError(f"{f}: the result of {key} is missing or unreadable ({exc}); "
                                 f"run that shard again") from None
    rows = [(key, found[key]) for _, key in batch if key in found]
    if len(rows) != len(batch):
        raise ShardError(f"{len(batch) - len(rows)} submissions of the batch are in no shard")
    isos = [d.get("isolation") or {} for _, d in docs]
    if all(x.get("isolated") for x in isos):
        iso = Isolation(True, isos[0].get("how", "bubblewrap"))
    else:
        why = next(x.get("reason", "") for x in isos if not x.get("isolated"))
        iso = Isolation(False, "none", f"at least one shard was not isolated: {why}")
    return rows, iso
