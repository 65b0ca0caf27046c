"""Wall time of each master notebook, executed top to bottom in a fresh kernel, against its budget.

The budget (notebooks/AUTHORING.md): 90 s for a notebook that loads SmolLM2, the real LLM, 120 s for
the capstone (14), which scores a dozen variants of it, and 60 s for every other one, on 2 quiet cores,
kernel start included (without llama.cpp: its cells add at most 30 s when it is built).
"""

from __future__ import annotations

import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S, BUDGET_LLM_S, BUDGET_CAPSTONE_S = 60, 90, 120


def budget(nb, name: str = "") -> int:
    """Seconds a notebook may take: more for one that loads the real LLM, most for the capstone."""
    if name.startswith("14_"):
        from coursekit import llamacpp
        return BUDGET_CAPSTONE_S + (30 if llamacpp.available() else 0)
    uses_llm = any("SMOLLM2" in "".join(c.source) for c in nb.cells if c.cell_type == "code")
    return BUDGET_LLM_S if uses_llm else BUDGET_S


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
        rows.append(dict(notebook=path.name, seconds=time.perf_counter() - start, status=status,
                         budget=budget(nb, path.name)))
    return dict(rows=rows, total_seconds=sum(r["seconds"] for r in rows))


def to_markdown(r: dict) -> str:
    lines = ["| notebook | seconds | budget | status |", "|---|---:|---:|---|"]
    for x in r["rows"]:
        over = " (over budget)" if x["seconds"] > x.get("budget", BUDGET_S) else ""
        lines.append(f"| {x['notebook']} | {x['seconds']:.1f} | {x.get('budget', BUDGET_S)} | {x['status']}{over} |")
    lines.append(f"| **all** | **{r['total_seconds']:.1f}** | | |")
    return "\n".join(lines)
