"""`coursekit`: the instructor's commands.

    coursekit release notebooks --out notebooks/learner     learner copies of the masters
    coursekit release notebooks --out notebooks/learner --check   exit 1 when they are stale
    coursekit release notebooks --out notebooks/learner --repo OWNER/NAME@BRANCH
                                        publish from your repository (badges and install lines)
    coursekit grade SUBMISSION.ipynb|FOLDER... --out DIR [--jobs N] [--timeout S] [--memory-mb MB]
                    [--isolation auto|bwrap|none] [--shard I/N] [--gradebook canvas|moodle|csv]
                    [--learner-pattern REGEX]
    coursekit grade merge SHARD_DIR... --out DIR    join the folders of `--shard I/N` runs

Exit status: 0 when the command did its work (learners' failures are data in the reports),
1 when `release --check` finds stale copies or a spec is broken, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import signal
import sys


def _release(args) -> int:
    from .release import ReleaseError, course_repo, masters, release, stale_copies
    from pathlib import Path
    src = Path(args.notebooks)
    if not src.is_dir():
        print(f"coursekit release: {src} is not a folder", file=sys.stderr)
        return 2
    try:
        if args.check and args.repo is not None:
            print("coursekit release: --check compares with the stored setting; it takes no --repo",
                  file=sys.stderr)
            return 2
        if args.check:
            problems = stale_copies(src, args.out)
            for p in problems:
                print(p, file=sys.stderr)
            if problems:
                print("learner copies are stale: run `make release`", file=sys.stderr)
                return 1
            print(f"{len(masters(src))} learner copies are up to date")
            return 0
        written = release(src, args.out, repo=args.repo)
    except ReleaseError as exc:
        print(f"coursekit release: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a --repo that is not OWNER/NAME[@REF], or a broken setting
        print(f"coursekit release: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"coursekit release: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} learner copies to {args.out}")
    repo = course_repo(src)
    if repo is not None and repo.is_placeholder:
        print(f"note: the course's repository is still the placeholder {repo}; publish with "
              f"--repo OWNER/NAME@BRANCH (your fork)", file=sys.stderr)
    elif repo is not None:
        print(f"badges and install lines point to {repo}")
    return 0


def _grade_usage(args) -> str | None:
    """What is wrong with the grade command's options, naming the option; None when nothing is."""
    from .grading.gradebook import GradebookError, KINDS, compile_pattern
    from .grading.isolation import MODES
    from .grading.shards import ShardError, parse
    if args.notebook is not None and not (args.notebook.isdigit() and len(args.notebook) <= 2):
        return "--notebook takes the notebook's number, e.g. 03"
    if args.jobs < 1 or args.timeout <= 0 or args.memory_mb < 64 or args.exercise_timeout <= 0:
        return "--jobs must be >= 1, --timeout and --exercise-timeout > 0, --memory-mb >= 64"
    if args.isolation not in MODES:
        return f"--isolation must be one of {', '.join(MODES)}, got {args.isolation!r}"
    if args.gradebook is not None and args.gradebook not in KINDS:
        return f"--gradebook must be one of {', '.join(KINDS)}, got {args.gradebook!r}"
    if args.learner_pattern is not None and args.gradebook is None:
        return "--learner-pattern only applies with --gradebook canvas|moodle|csv"
    try:
        compile_pattern(args.learner_pattern)
        args.shard = parse(args.shard) if args.shard is not None else None
    except (GradebookError, ShardError) as exc:
        return str(exc)
    return None


def _load_specs(args):
    from .grading import load_registry
    try:
        return load_registry(args.spec_module), 0
    except ImportError as exc:
        print(f"coursekit grade: cannot import the exercise specs: {exc}", file=sys.stderr)
        return None, 2
    except Exception as exc:
        print(f"coursekit grade: the exercise specs are broken: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None, 1


def _merge(args) -> int:
    """`coursekit grade merge SHARD_DIR... --out DIR`."""
    from pathlib import Path
    from .grading import GradeOptions, UsageError, prepare_out
    from .grading.report import write_reports
    from .grading.shards import ShardError, merge_rows
    folders = [Path(p) for p in args.submissions[1:]]
    if not folders:
        print("coursekit grade merge: give the shard folders to merge (the --out of each --shard run)",
              file=sys.stderr)
        return 2
    if args.shard is not None:
        print("coursekit grade merge: --shard is for grading; merge takes every shard's folder", file=sys.stderr)
        return 2
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        print(f"coursekit grade merge: no such folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        rows, isolation = merge_rows(folders)
        out = Path(args.out)
        if any(out.resolve() == f.resolve() for f in folders):
            raise UsageError(f"--out {out} is one of the shard folders; merge into a new folder")
        prepare_out(out)
    except (ShardError, UsageError) as exc:
        print(f"coursekit grade merge: {exc}", file=sys.stderr)
        return 2
    registry, rc = _load_specs(args)
    if registry is None:
        return rc
    options = GradeOptions(gradebook=args.gradebook, learner_pattern=args.learner_pattern)
    from .grading.store import save
    for key, r in rows:
        save(out, key, r)
    write_reports(out, rows, registry, isolation, options)
    if isolation.warning:
        print(isolation.warning, file=sys.stderr)
    print(f"merged {len(folders)} shards: {len(rows)} submissions; see {args.out}/grades.csv")
    _say_gradebook(args, rows, registry)
    return 0


def _grade(args) -> int:
    from .grading import GradeOptions, UsageError, find_submissions, grade_batch, prepare_out
    problem = _grade_usage(args)
    if problem:
        print(f"coursekit grade: {problem}", file=sys.stderr)
        return 2
    if args.submissions and args.submissions[0] == "merge":
        return _merge(args)
    from pathlib import Path
    from .grading.isolation import resolve
    try:  # usage errors first, before the (slow) exercise specs are imported
        find_submissions(args.submissions)
        prepare_out(Path(args.out))
    except UsageError as exc:
        print(f"coursekit grade: {exc}", file=sys.stderr)
        return 2
    try:
        isolation = resolve(args.isolation)
    except Exception as exc:
        print(f"coursekit grade: --isolation {args.isolation}: {exc}", file=sys.stderr)
        return 2
    if isolation.warning:  # the first thing the instructor reads
        print(isolation.warning, file=sys.stderr)
    registry, rc = _load_specs(args)
    if registry is None:
        return rc

    def stop(signum, frame):  # SIGTERM/SIGINT: stop the runs in flight, keep finished results
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    options = GradeOptions(timeout=args.timeout, memory_mb=args.memory_mb, jobs=args.jobs,
                           exercise_timeout=args.exercise_timeout, notebook=args.notebook,
                           isolation=args.isolation, shard=args.shard, gradebook=args.gradebook,
                           learner_pattern=args.learner_pattern)
    try:
        results = grade_batch(args.submissions, args.out, options, registry=registry)
    except UsageError as exc:
        print(f"coursekit grade: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ncoursekit grade: interrupted; run the same command again to grade the rest",
              file=sys.stderr)
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    part = f" (shard {args.shard[0]}/{args.shard[1]})" if args.shard else ""
    isolated = "isolated with " + isolation.how if isolation.isolated else "NOT isolated"
    print(f"graded {len(results)} submissions{part} ({summary}); {isolated}; see {args.out}/grades.csv")
    _say_gradebook(args, [(None, r) for r in results], registry)
    return 0


def _say_gradebook(args, rows, registry) -> None:
    """Which gradebook was written, and the submissions it left out (no learner id in their path)."""
    if not args.gradebook:
        return
    from .grading.gradebook import FILES, build
    book = build(rows, registry, args.learner_pattern)
    print(f"gradebook: {args.out}/{FILES[args.gradebook]} ({len(book.scores)} learners)")
    if book.unmatched:
        shown = ", ".join(book.unmatched[:5]) + (" ..." if len(book.unmatched) > 5 else "")
        print(f"gradebook: {len(book.unmatched)} submissions match no learner and were left out: {shown}",
              file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coursekit", description="Instructor tools of the quantization course.")
    sub = parser.add_subparsers(dest="command", required=True)

    rel = sub.add_parser("release", help="write learner copies (solutions stubbed, exercise outputs cleared)")
    rel.add_argument("notebooks", help="the folder of master notebooks (NN_topic.ipynb)")
    rel.add_argument("--out", required=True, help="where the learner copies go (e.g. notebooks/learner)")
    rel.add_argument("--check", action="store_true", help="write nothing; exit 1 if the copies are stale")
    rel.add_argument("--repo", default=None, metavar="OWNER/NAME[@REF]",
                     help="the GitHub repository (or git URL) learners install from and Colab opens; "
                          "stored in pyproject.toml [tool.coursekit] and written into every notebook")
    rel.set_defaults(func=_release)

    g = sub.add_parser("grade", help="grade learners' notebooks in sandboxed kernels")
    g.add_argument("submissions", nargs="*", help="submitted .ipynb files, or folders of them; or "
                   "`merge SHARD_DIR...` to join the folders of --shard runs")
    g.add_argument("--out", required=True, help="folder for grades.csv, grades.json, feedback/, results/")
    g.add_argument("--jobs", type=int, default=1, help="submissions graded at once (default 1)")
    g.add_argument("--timeout", type=float, default=600.0,
                   help="wall-time seconds for running one notebook's cells (default 600)")
    g.add_argument("--exercise-timeout", type=float, default=30.0,
                   help="seconds for one exercise's hidden cases (default 30)")
    g.add_argument("--memory-mb", type=int, default=4096,
                   help="resident memory of one submission's kernel, MB (default 4096)")
    g.add_argument("--notebook", default=None,
                   help="grade every submission as notebook NN (default: NN_ in each file name)")
    g.add_argument("--spec-module", action="append", default=None, metavar="MODULE",
                   help="import exercises from MODULE.EXERCISES instead of the course's specs (repeatable)")
    g.add_argument("--isolation", default="auto", metavar="auto|bwrap|none",
                   help="run each kernel under bubblewrap: auto (when it can run; reports say when it "
                        "could not), bwrap (required), none (default auto)")
    g.add_argument("--shard", default=None, metavar="I/N",
                   help="grade only the I-th of N deterministic shards of the batch (I = 1..N); join the "
                        "shards' folders with `coursekit grade merge`")
    g.add_argument("--gradebook", default=None, metavar="canvas|moodle|csv",
                   help="also write a gradebook an LMS imports (one column per notebook)")
    g.add_argument("--learner-pattern", default=None, metavar="REGEX",
                   help="regex with a group (?P<learner>...) that finds the learner id in each "
                        "submission's path (default: LEARNER_NN_topic.ipynb, else LEARNER/NN_topic.ipynb)")
    g.set_defaults(func=_grade)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "grade" and not args.submissions:
        parser.error("grade: no submissions given")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
