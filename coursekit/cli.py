"""`coursekit`: the instructor's commands.

    coursekit release notebooks --out notebooks/learner     learner copies of the masters
    coursekit release notebooks --out notebooks/learner --check   exit 1 when they are stale
    coursekit release notebooks --out notebooks/learner --repo OWNER/NAME@BRANCH
                                        publish from your repository (badges and install lines)
    coursekit grade SUBMISSION.ipynb|FOLDER... --out DIR [--jobs N] [--timeout S] [--memory-mb MB]

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


def _grade(args) -> int:
    from .grading import GradeOptions, UsageError, find_submissions, grade_batch, load_registry, prepare_out
    if args.notebook is not None and not (args.notebook.isdigit() and len(args.notebook) <= 2):
        print("coursekit grade: --notebook takes the notebook's number, e.g. 03", file=sys.stderr)
        return 2
    if args.jobs < 1 or args.timeout <= 0 or args.memory_mb < 64 or args.exercise_timeout <= 0:
        print("coursekit grade: --jobs must be >= 1, --timeout and --exercise-timeout > 0, "
              "--memory-mb >= 64", file=sys.stderr)
        return 2
    from pathlib import Path
    try:  # usage errors first, before the (slow) exercise specs are imported
        find_submissions(args.submissions)
        prepare_out(Path(args.out))
    except UsageError as exc:
        print(f"coursekit grade: {exc}", file=sys.stderr)
        return 2
    try:
        registry = load_registry(args.spec_module)
    except ImportError as exc:
        print(f"coursekit grade: cannot import the exercise specs: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        print(f"coursekit grade: the exercise specs are broken: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1

    def stop(signum, frame):  # SIGTERM/SIGINT: stop the runs in flight, keep finished results
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    options = GradeOptions(timeout=args.timeout, memory_mb=args.memory_mb, jobs=args.jobs,
                           exercise_timeout=args.exercise_timeout, notebook=args.notebook)
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
    print(f"graded {len(results)} submissions ({summary}); see {args.out}/grades.csv")
    return 0


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
    g.add_argument("submissions", nargs="*", help="submitted .ipynb files, or folders of them")
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
