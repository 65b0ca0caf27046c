"""`make bench`: how coursekit compares with what learners would otherwise use.

Each module measures one thing and returns plain data; `benchmarks.run` writes the report
(markdown, JSON and PNG figures) under benchmarks/results/. Figures are measurements on the
machine that ran them, not targets enforced by tests.
"""
