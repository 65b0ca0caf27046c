"""Wall time of each master notebook, executed top to bottom in a fresh kernel."""

from __future__ import annotations

import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(paths=None, timeout: int = 600) -> dict:
    import nbformat
    from nbclient import NotebookClient
    paths = sorted(paths or (ROOT / "notebooks").glob("*.ipynb"))
    rows = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        status = "ok"
        try:
            NotebookClient(nb, timeout=timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
        except Exception as exc:  # a failing notebook is a result too
            status = f"error: {type(exc).__name__}"
        rows.append(dict(notebook=path.name, seconds=time.perf_counter() - start, status=status))
    return dict(rows=rows, total_seconds=sum(r["seconds"] for r in rows))


def to_markdown(r: dict) -> str:
    lines = ["| notebook | seconds | status |", "|---|---:|---|"]
    lines += [f"| {x['notebook']} | {x['seconds']:.1f} | {x['status']} |" for x in r["rows"]]
    lines.append(f"| **all** | **{r['total_seconds']:.1f}** | |")
    return "\n".join(lines)
