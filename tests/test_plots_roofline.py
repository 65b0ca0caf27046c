"""The figures notebook 10 adds: the roofline and measured time against the memory floor."""
import matplotlib.figure
import pytest

from coursekit import plots

POINTS = {"fp32, batch 1": (0.5, "fp32"), "int4, batch 1": (3.76, "bf16"), "fp32, batch 64": (31.0, "fp32")}
PEAKS = {"fp32": 200.0, "bf16": 400.0}


def test_roofline_draws_one_roof_per_peak_and_puts_points_on_their_roof():
    fig = plots.plot_roofline(POINTS, 20.0, PEAKS, measured={"fp32, batch 1": (0.5, 7.0)}, title="t")
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log" and ax.get_title() == "t"
    roofs = [line for line in ax.lines if line.get_label().startswith("roof:")]
    assert len(roofs) == 2
    for line, peak in zip(roofs, PEAKS.values()):
        xs, ys = line.get_xdata(), line.get_ydata()
        assert max(ys) == pytest.approx(peak)                               # flat at the peak
        assert ys[0] == pytest.approx(xs[0] * 20.0)                         # slope: bandwidth
    texts = [t.get_text() for t in ax.texts]
    assert "ridge 10 flop/B" in texts and "ridge 20 flop/B" in texts      # peak / bandwidth
    offsets = {c.get_label(): tuple(c.get_offsets()[0]) for c in ax.collections}
    assert offsets["fp32, batch 1 (predicted)"] == pytest.approx((0.5, 10.0))   # memory-bound: I x bandwidth
    assert offsets["int4, batch 1 (predicted)"] == pytest.approx((3.76, 75.2))
    assert offsets["fp32, batch 64 (predicted)"] == pytest.approx((31.0, 200.0))  # compute-bound: the peak
    assert offsets["fp32, batch 1 (measured)"] == pytest.approx((0.5, 7.0))
    assert "14 GB/s" in texts                                               # achieved: 7 GFLOP/s / 0.5 flop/B


def test_roofline_without_measurements_labels_points_plainly():
    fig = plots.plot_roofline(POINTS, 20.0, PEAKS)
    ax = fig.axes[0]
    assert sorted(c.get_label() for c in ax.collections) == sorted(POINTS)
    assert not any("GB/s" in t.get_text() for t in ax.texts)
    assert ax.get_ylabel() == "attainable GFLOP/s"


def test_roofline_measured_points_are_hollow_and_state_their_bandwidth():
    measured = {"fp32, batch 1": (0.5, 9.0), "int4, batch 1": (3.76, 41.36), "fp32, batch 64": (31.0, 155.0)}
    fig = plots.plot_roofline(POINTS, 20.0, PEAKS, measured=measured)
    ax = fig.axes[0]
    by_label = {c.get_label(): c for c in ax.collections}
    for label, (intensity, gflops) in measured.items():
        dot = by_label[f"{label} (measured)"]
        assert tuple(dot.get_offsets()[0]) == pytest.approx((intensity, gflops))
        assert len(dot.get_facecolor()) == 0 or dot.get_facecolor()[0][3] == 0     # hollow
    texts = [t.get_text() for t in ax.texts]
    assert {"18 GB/s", "11 GB/s", "5 GB/s"} <= set(texts)                 # GFLOP/s / (flop per byte)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "int4, batch 1 (predicted)" in legend and "int4, batch 1 (measured)" in legend
    assert "achieved" in ax.get_ylabel()


def test_roofline_measured_point_looks_like_its_predicted_one():
    fig = plots.plot_roofline(POINTS, 20.0, PEAKS, measured={"int4, batch 1": (3.76, 40.0)})
    by_label = {c.get_label(): c for c in fig.axes[0].collections}
    predicted, measured = by_label["int4, batch 1 (predicted)"], by_label["int4, batch 1 (measured)"]
    assert tuple(predicted.get_facecolor()[0]) == tuple(measured.get_edgecolor()[0])


@pytest.mark.parametrize("args,match", [
    (({}, 20.0, PEAKS), "points: expected a non-empty"),
    ((POINTS, 20.0, {}), "peaks_gflops: expected a non-empty"),
    ((POINTS, 0.0, PEAKS), "bandwidth_gb_s"),
    (({"x": (1.0, "int8")}, 20.0, PEAKS), "roof"),
    (({"x": (-1.0, "fp32")}, 20.0, PEAKS), "intensity"),
])
def test_roofline_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        plots.plot_roofline(*args)


@pytest.mark.parametrize("measured,match", [({"x": (0.0, 5.0)}, r"measured\['x'\] intensity"),
                                            ({"x": (1.0, -5.0)}, r"measured\['x'\] GFLOP/s")])
def test_roofline_rejects_bad_measurements(measured, match):
    with pytest.raises(ValueError, match=match):
        plots.plot_roofline(POINTS, 20.0, PEAKS, measured=measured)


def test_time_vs_floor_has_one_panel_per_situation_and_writes_the_ratio():
    panels = {"batch 1": {"fp32": (27.0, 25.0), "int4": (3.8, 3.5)},
              "batch 64": {"fp32": (390.0, 25.0), "int4": (370.0, 3.5)}}
    fig = plots.plot_time_vs_floor(panels, title="t")
    assert [ax.get_title() for ax in fig.axes] == ["batch 1", "batch 64"]
    assert all(ax.get_xscale() == "log" for ax in fig.axes)
    texts = [t.get_text() for t in fig.axes[1].texts]
    assert "  390 ms (15.6x floor)" in texts and "  370 ms (105.7x floor)" in texts
    assert [p.get_width() for p in fig.axes[0].patches] == [27.0, 3.8]


@pytest.mark.parametrize("panels,match", [({}, "empty"), ({"a": {}}, "empty"),
                                          ({"a": {"x": (0.0, 1.0)}}, "time of 'x'"),
                                          ({"a": {"x": (1.0, -1.0)}}, "floor of 'x'")])
def test_time_vs_floor_rejects_bad_panels(panels, match):
    with pytest.raises(ValueError, match=match):
        plots.plot_time_vs_floor(panels)
