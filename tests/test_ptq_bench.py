"""benchmarks/ptq.py: the LM part runs on a few tokens and its table reads right; run.py lists the section."""


def test_ptq_section_lm_part_and_markdown():
    from benchmarks import ptq as bench
    from benchmarks import run
    from coursekit.models.lm import load_lm
    r = bench.run(None, load_lm(), max_tokens=256, n_calibration=16)
    methods = [row["method"] for row in r["lm"]]
    assert methods == ["fp32", "int4 RTN", "int4 AWQ", "int4 GPTQ", "int3 RTN", "int3 AWQ", "int3 GPTQ"]
    fp32 = r["lm"][0]["perplexity"]
    assert all(row["perplexity"] > 0.9 * fp32 for row in r["lm"])
    assert all(row["nbytes"] < r["lm"][0]["nbytes"] for row in r["lm"][1:])
    md = bench.to_markdown(r)
    assert md.count("| int") == 6 and "perplexity" in md
    assert "ptq" in run.SECTIONS and "ptq" in run.TITLES


def test_ptq_markdown_reports_slice_wins_against_the_target():
    from benchmarks import ptq as bench
    rows = [dict(method="int4 RTN", baseline=None, mean_cosine=0.9, tail_cosine=0.85, worst_cosine=0.8, retrieval=0.7,
                 slice_means=[0.9] * 8, nbytes=1e6, seconds=1.0),
            dict(method="int4 GPTQ", baseline="int4 RTN", mean_cosine=0.95, tail_cosine=0.85, worst_cosine=0.9, retrieval=0.8,
                 slice_means=[0.95] * 8, nbytes=1e6, seconds=2.0, slice_wins=8),
            dict(method="int4 AWQ", baseline="int4 RTN", mean_cosine=0.89, tail_cosine=0.85, worst_cosine=0.9, retrieval=0.8,
                 slice_means=[0.89] * 8, nbytes=1e6, seconds=2.0, slice_wins=3)]
    md = bench.to_markdown({"encoder": rows})
    assert "8/8 vs int4 RTN (target met)" in md and "3/8 vs int4 RTN (below target)" in md
