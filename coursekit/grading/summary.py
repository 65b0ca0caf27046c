"""The class summary for the instructor: per exercise, how many passed and the most common failure.

Written as `summary.md` (a table, with the isolation warning on top when submissions were not
isolated) and `summary.png` (pass rate per exercise). A project whose spec names two of its
measures to plot (`Project.plot`, e.g. perplexity against megabytes) gets a plot of the class,
`summary_ID.png`: one point per submission, with the project's reference points (the baseline). A failure message is counted without what
is particular to one submission: the case number, the inputs and the values on its extra lines,
so that "failed: dtype is torch.float64, expected torch.float32" from twenty learners is one
message with a count of twenty.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..exercises.verdict import Status


@dataclass
class ExerciseSummary:
    id: str
    title: str
    max_points: float
    graded: int          # submissions that have this exercise
    passed: int
    mean_points: float
    common_failure: str  # the most common failure message ("" when none failed)
    common_count: int

    @property
    def pass_rate(self) -> float:
        return self.passed / self.graded if self.graded else 0.0


def failure_key(message: str) -> str:
    """A failure message with what is particular to one submission taken out."""
    first = message.split("\n", 1)[0]
    first = re.sub(r"^[^:]*?: ", "", first, count=1)                 # the "NN.id (title): " head
    first = re.sub(r" on hidden case [0-9]+ of [0-9]+", "", first)
    first = re.sub(r" \(inputs .*?\)(?=: )", "", first)
    first = re.sub(r"; inputs .*$", ".", first)
    return first.strip()


def summarize(rows: list, registry) -> list[ExerciseSummary]:
    seen = {e for _, r in rows for e in r.exercises}
    ids = [e for e in registry if e in seen] + sorted(seen - set(registry))
    out = []
    for ex_id in ids:
        results = [r.exercises[ex_id] for _, r in rows if ex_id in r.exercises]
        fails = Counter(failure_key(e.message) for e in results if e.status != Status.PASSED)
        common, count = fails.most_common(1)[0] if fails else ("", 0)
        out.append(ExerciseSummary(ex_id, results[0].title, results[0].max_points, len(results),
                                   sum(e.status == Status.PASSED for e in results),
                                   sum(e.points for e in results) / len(results), common, count))
    return out


def to_markdown(summary: list[ExerciseSummary], rows: list, isolation) -> str:
    lines = []
    if isolation is not None and not isolation.isolated:
        lines += [f"> **{isolation.warning}**", ""]
    statuses = Counter(str(r.status) for _, r in rows)
    lines += ["# Class summary", "",
              f"{len(rows)} submissions ({', '.join(f'{v} {k}' for k, v in sorted(statuses.items()))}); "
              f"isolation: {isolation.how if isolation is not None and isolation.isolated else 'none'}.", "",
              "| exercise | graded | passed | pass rate | mean points | most common failure |",
              "|---|---:|---:|---:|---:|---|"]
    for s in summary:
        title = f" · {s.title}" if s.title else ""
        fail = f"{s.common_failure} ({s.common_count}×)" if s.common_count else ""
        fail = fail.replace("|", "\\|")
        lines.append(f"| {s.id}{title} | {s.graded} | {s.passed} | {100 * s.pass_rate:.0f} % | "
                     f"{s.mean_points:.2f} / {s.max_points:g} | {fail} |")
    return "\n".join(lines) + "\n"


def figure(summary: list[ExerciseSummary]):
    """Pass rate per exercise, one horizontal bar each (headless; returns a matplotlib Figure)."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7, 0.45 * max(3, len(summary)) + 1))
    ax = fig.add_subplot()
    labels = [s.id for s in summary][::-1]
    rates = [100 * s.pass_rate for s in summary][::-1]
    ax.barh(labels, rates, color="#4c72b0")
    for y, (rate, s) in enumerate(zip(rates, summary[::-1])):
        ax.text(min(rate + 1, 92), y, f"{s.passed}/{s.graded}", va="center", fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xlabel("submissions that passed (%)")
    ax.set_title("Pass rate per exercise")
    fig.tight_layout()
    return fig


def class_points(rows: list, ex_id: str, x: str, y: str) -> tuple[list, dict]:
    """Every submission's (x, y) measures of project `ex_id` as [(submission, x, y)], and its marks."""
    points, marks = [], {}
    for _, r in rows:
        e = r.exercises.get(ex_id)
        if e is None:
            continue
        marks = marks or e.marks
        if e.measures.get(x) is not None and e.measures.get(y) is not None:
            points.append((r.submission, float(e.measures[x]), float(e.measures[y])))
    return points, marks


def class_figure(ex_id: str, title: str, x: str, y: str, points: list, marks: dict):
    """One point per submission, y against x, and the project's reference points (headless Figure)."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    if points:
        ax.scatter([p[1] for p in points], [p[2] for p in points], color="#4c72b0", s=28,
                   label=f"submissions ({len(points)})", zorder=3)
    for (label, (mx, my)), color in zip(marks.items(), ("#c44e52", "#55a868", "#8172b2", "#ccb974")):
        if my is None:          # a limit on x alone (a budget): a line
            ax.axvline(mx, color=color, linestyle="--", label=label)
        else:
            ax.scatter([mx], [my], marker="*", s=160, color=color, label=label, zorder=4)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"{ex_id}{f' · {title}' if title else ''}: the class")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def write_summary(out: Path, rows: list, registry, isolation) -> list[ExerciseSummary]:
    summary = summarize(rows, registry)
    text = to_markdown(summary, rows, isolation)
    if summary:
        figure(summary).savefig(out / "summary.png", dpi=100)
    for s in summary:
        project = getattr(registry.get(s.id), "project", None)
        if project is None or not project.plot:
            continue
        x, y = project.plot
        points, marks = class_points(rows, s.id, x, y)
        name = f"summary_{s.id}.png"
        class_figure(s.id, s.title, x, y, points, marks).savefig(out / name, dpi=100)
        text += f"\n## {s.id}: {y} against {x}\n\n![{s.id}]({name})\n"
    (out / "summary.md").write_text(text, encoding="utf-8")
    return summary
