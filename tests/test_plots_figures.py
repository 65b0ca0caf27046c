"""What the learner sees in the figures of 03, 05 and 07 (issue 15): legible numbers, every block's
grid, titles that say which tensor, the error of each row."""

import matplotlib
import pytest
import torch

from coursekit import plots, quant
from coursekit.widgets import outlier_weight

X = torch.tensor([[191.6, -13.5, 728.6],
                  [92.14, 295.5, -184.0],
                  [0.0, 684.6, 245.5]])


def _cell_texts(ax):
    """(text, text colour, cell colour) of every number written in a heatmap's cells."""
    im = ax.images[0]
    values = im.get_array()
    out = []
    for t in ax.texts:
        j, i = (round(c) for c in t.get_position())
        out.append((t.get_text(), t.get_color(), im.cmap(im.norm(values[i, j]))))
    return out


def test_heatmap_numbers_contrast_with_their_cells():
    codes = quant.linear_quantize(X, 3.5, -70)
    fig = plots.plot_quantization_error(X, codes, quant.linear_dequantize(codes, 3.5, -70))
    for ax in fig.axes[:4]:                                    # the four heatmaps (colorbars after them)
        texts = _cell_texts(ax)
        assert len(texts) == 9
        for text, color, cell in texts:
            assert plots.contrast_ratio(color, cell) >= 4.5, (ax.get_title(), text)
    error = {t: c for t, c, _ in _cell_texts(fig.axes[3])}
    assert error["39.1"] == "black"                            # the clipped value, on the palest cell


def test_heatmap_shows_every_value_that_moved():
    codes = quant.linear_quantize(X, 3.5, -70)
    x_hat = quant.linear_dequantize(codes, 3.5, -70)
    fig = plots.plot_quantization_error(X, codes, x_hat)
    original = [t for t, _, _ in _cell_texts(fig.axes[0])]
    dequantized = [t for t, _, _ in _cell_texts(fig.axes[2])]
    moved = (X != x_hat).reshape(-1).tolist()
    assert sum(moved) == 8
    for a, b, m in zip(original, dequantized, moved):
        assert (a != b) == m, (a, b)
    assert "191.6" in original and "192.5" in dequantized
    assert [t for t, _, _ in _cell_texts(fig.axes[1])][:3] == ["-15", "-74", "127"]   # codes: integers
    assert fig.axes[0].images[0].get_clim() == fig.axes[2].images[0].get_clim()     # one colour scale


def test_contrast_helpers():
    assert plots.contrast_ratio("black", "white") == pytest.approx(21.0)
    assert plots.text_color_on((1.0, 1.0, 0.8)) == "black"
    assert plots.text_color_on((0.1, 0.0, 0.3)) == "white"


def _strip_grids(fig):
    """The strip under the histogram: {block index: sorted grid values}."""
    strip = fig.axes[1]
    grids = {}
    for coll in strip.collections:
        for seg in coll.get_segments():
            (x0, y0), (_, y1) = seg
            grids.setdefault(round((y0 + y1) / 2), []).append(float(x0))
    return {k: sorted(v) for k, v in grids.items()}


@pytest.mark.parametrize("granularity,blocks", [("per_channel", 16), ("per_group", 64)])
def test_histogram_draws_the_grid_of_every_block(granularity, blocks):
    w = outlier_weight()
    q = quant.quantize(w, bits=4, granularity=granularity, group_size=16 if granularity == "per_group" else None)
    fig = plots.plot_histogram_with_grid(w, q)
    assert len(fig.axes) == 2 and "4-bit" in fig.axes[0].get_title()
    grids = _strip_grids(fig)
    assert sorted(grids) == list(range(blocks))
    scale, zero = q.scale.reshape(-1), q.zero_point.reshape(-1).float()
    for b in (0, 3, blocks - 1):                               # each block's own 16 levels
        expected = (scale[b] * (torch.arange(-8, 8).float() - zero[b])).tolist()
        assert grids[b] == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert len({round(g[-1] - g[0], 6) for g in grids.values()}) > 1   # not one grid copied everywhere
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("each block" in t for t in legend)


def test_histogram_per_tensor_draws_its_16_lines_on_a_log_scale_with_a_label():
    w = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    q = quant.quantize(w, bits=4, symmetric=True)
    fig = plots.plot_histogram_with_grid(w, q, label="weight w")
    (ax,) = fig.axes
    assert ax.get_title().startswith("weight w: 4-bit symmetric")
    assert ax.get_yscale() == "log"
    vertical = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 2 and ln.get_xdata()[0] == ln.get_xdata()[1]]
    assert len(vertical) == 16
    assert plots.plot_histogram_with_grid(w, q, logy=False).axes[0].get_yscale() == "linear"


def test_error_vs_bits_titles_tell_tensors_apart():
    w = torch.randn(32, 32, generator=torch.Generator().manual_seed(0))
    a, b = (plots.plot_error_vs_bits(w, title=t).axes[0].get_title() for t in ("weight w", "activation a"))
    assert a != b and a == "weight w"
    assert plots.plot_error_vs_bits(w).axes[0].get_title() == "Quantization error against bit width"


def test_error_per_row_puts_each_row_at_its_range_and_error():
    w = outlier_weight()
    per_tensor = quant.quantize(w, bits=4, symmetric=True)
    per_row = quant.quantize(w, bits=4, symmetric=True, granularity="per_channel")
    fig = plots.plot_error_per_row(w, {"one scale": per_tensor, "per row": per_row.dequantize()})
    ax = fig.axes[0]
    assert len(ax.collections) == 2
    row_max = w.abs().amax(dim=1)
    for coll, q in zip(ax.collections, (per_tensor, per_row)):
        xy = torch.tensor(coll.get_offsets())
        assert xy.shape == (16, 2)
        assert torch.allclose(xy[:, 0].float(), row_max, rtol=1e-6)
        rms = (w - q.dequantize()).pow(2).mean(dim=1).sqrt()
        assert torch.allclose(xy[:, 1].float(), rms, rtol=1e-5)
    quiet = [r for r in range(16) if r not in (3, 11)]
    rms_tensor = torch.tensor(ax.collections[0].get_offsets())[:, 1]
    rms_row = torch.tensor(ax.collections[1].get_offsets())[:, 1]
    assert (rms_row[quiet] < rms_tensor[quiet] / 2).all()      # quiet rows gain from their own scale
    assert "MSE" in ax.get_legend().get_texts()[0].get_text()
    with pytest.raises(ValueError):
        plots.plot_error_per_row(w, {})
    with pytest.raises(ValueError):
        plots.plot_error_per_row(w, {"wrong shape": w[:4]})


def test_figures_are_headless_figures():
    w = outlier_weight()
    for fig in (plots.plot_histogram_with_grid(w, quant.quantize(w, bits=3, granularity="per_channel")),
                plots.plot_error_per_row(w, {"q": quant.quantize(w)})):
        assert isinstance(fig, matplotlib.figure.Figure)


def test_error_per_layer_draws_each_variant_at_its_layers():
    names = ["model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj", "model.layers.1.mlp.up_proj"]
    errors = {"ours": dict(zip(names, (1e-3, 2e-3, 3e-3))), "theirs": dict(zip(names, (1e-3, 2e-3, 3e-3))),
              "per tensor": dict(zip(reversed(names), (9e-3, 8e-3, 7e-3)))}
    fig = plots.plot_error_per_layer(errors, title="three layers")
    assert isinstance(fig, matplotlib.figure.Figure)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.q_proj", "0.down_proj", "1.up_proj"]
    drawn = [torch.tensor(c.get_offsets())[:, 1] for c in ax.collections]
    assert torch.allclose(drawn[0].double(), torch.tensor([1e-3, 2e-3, 3e-3], dtype=torch.float64))
    assert torch.equal(drawn[0], drawn[1])                                 # agreeing variants coincide
    assert torch.allclose(drawn[2].double(), torch.tensor([7e-3, 8e-3, 9e-3], dtype=torch.float64))  # by name
    assert ax.get_yscale() == "log" and ax.get_title() == "three layers"


def test_error_per_layer_names_the_bad_argument():
    good = {"a": {"x": 0.1}}
    with pytest.raises(ValueError, match="errors"):
        plots.plot_error_per_layer({})
    with pytest.raises(ValueError, match=r"errors\['b'\]"):
        plots.plot_error_per_layer({**good, "b": {"y": 0.1}})
    with pytest.raises(ValueError, match=r"errors\['a'\]\['x'\]"):
        plots.plot_error_per_layer({"a": {"x": float("-1")}})
