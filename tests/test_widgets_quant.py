"""The quantization explorer, driven headless: set control values as a learner's clicks would."""

import pytest
import torch

from coursekit import quant
from coursekit.widgets import QuantizationExplorer, outlier_weight, quantization_explorer


@pytest.fixture(scope="module")
def explorer():
    return quantization_explorer()


@pytest.fixture(autouse=True)
def reset(explorer):
    yield
    explorer.bits_slider.value = 4
    explorer.mode_buttons.value = "asymmetric"
    explorer.granularity_buttons.value = "per_tensor"


def test_default_tensor_is_seeded_and_has_outlier_rows():
    a, b = outlier_weight(), outlier_weight()
    assert torch.equal(a, b)
    row_range = a.abs().amax(dim=1)
    assert row_range[3] > 4 * row_range.median() and row_range[11] > 4 * row_range.median()


def test_starts_consistent_with_coursekit(explorer):
    s = explorer.state()
    assert (s["bits"], s["symmetric"], s["granularity"], s["group_size"]) == (4, False, "per_tensor", None)
    expected = quant.quantization_error(explorer.x, quant.quantize(explorer.x, bits=4))
    assert s["mse"] == pytest.approx(expected)
    assert f"{expected:.4g}" in explorer.mse_label.value
    assert bytes(explorer.image.value).startswith(b"\x89PNG")
    assert explorer.group_size_dropdown.disabled


def test_fewer_bits_means_larger_error_and_a_new_figure(explorer):
    errors, images = {}, set()
    for bits in (8, 6, 4, 2):
        explorer.bits_slider.value = bits
        errors[bits] = explorer.state()["mse"]
        images.add(bytes(explorer.image.value))
        assert f"{bits}-bit" in explorer.mse_label.value
        assert f"{bits}-bit" in explorer.figure.axes[0].get_title()
    assert errors[8] < errors[6] < errors[4] < errors[2]
    assert len(images) == 4


def test_finer_granularity_helps_on_outlier_rows(explorer):
    per_tensor = explorer.state()["mse"]
    explorer.granularity_buttons.value = "per_channel"
    per_channel = explorer.state()
    explorer.granularity_buttons.value = "per_group"
    per_group = explorer.state()
    assert per_group["mse"] <= per_channel["mse"] < per_tensor / 2
    assert not explorer.group_size_dropdown.disabled
    assert per_group["group_size"] == explorer.group_size_dropdown.value
    assert "group size" in explorer.mse_label.value
    # finer blocks cost more scales: storage per value grows
    assert per_group["bits_per_value"] > per_channel["bits_per_value"] > 4


def test_group_size_only_matters_for_per_group(explorer):
    before = explorer.state()["mse"]
    explorer.group_size_dropdown.value = 4
    assert explorer.state()["mse"] == before and explorer.state()["group_size"] is None
    explorer.granularity_buttons.value = "per_group"
    small = explorer.state()["mse"]
    explorer.group_size_dropdown.value = 64
    assert explorer.state()["mse"] > small          # one group per row: coarser than groups of 4


def test_symmetric_mode(explorer):
    explorer.mode_buttons.value = "symmetric"
    s = explorer.state()
    assert s["symmetric"] and "symmetric" in explorer.mse_label.value
    q = quant.quantize(explorer.x, bits=4, symmetric=True)
    assert s["mse"] == pytest.approx(quant.quantization_error(explorer.x, q))
    assert int(explorer.qtensor.zero_point) == 0


def test_custom_tensor_and_update_returns_state():
    x = torch.linspace(-1, 3, 24).reshape(2, 12)
    e = QuantizationExplorer(x, bits=8)
    assert e.group_size_dropdown.options == (2, 3, 4, 6, 12)
    e.bits_slider.value = 3
    assert e.update() == e.state() and e.state()["bits"] == 3


def test_displays_itself_with_a_short_text_repr(explorer):
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"].startswith("QuantizationExplorer(4-bit asymmetric, per_tensor: MSE = ")
    assert "PNG" not in bundle["text/plain"]


def test_bad_inputs():
    with pytest.raises(TypeError, match="x"):
        QuantizationExplorer([1.0, 2.0])
    with pytest.raises(ValueError, match="floating-point"):
        QuantizationExplorer(torch.arange(8))
    with pytest.raises(ValueError, match="bits"):
        QuantizationExplorer(bits=9)
    with pytest.raises(ValueError, match="granularity"):
        QuantizationExplorer(granularity="per_row")
    with pytest.raises(ValueError, match="group_size"):
        QuantizationExplorer(group_size=5)


def test_a_failed_redraw_is_said_in_the_read_out(monkeypatch):
    e = quantization_explorer()

    def broken():
        raise ValueError("no <tick> today")

    monkeypatch.setattr(e, "update", broken)
    e.bits_slider.value = 6                      # a click: the callback must not raise
    assert "could not redraw" in e.mse_label.value
    assert "ValueError: no &lt;tick&gt; today" in e.mse_label.value


def test_log_counts_are_labelled_without_mathtext():
    fig = quantization_explorer().figure
    fig.canvas.draw()
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_text()]
    assert labels and not any("$" in t for t in labels), labels
