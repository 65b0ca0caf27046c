"""The output comparison behind `make test`: numbers within tolerance, everything else exact."""
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from coursekit import nbcompare as nc

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("stored, got", [
    ("perplexity 43.250", "perplexity 43.258"),       # bf16 perplexity, two CPUs
    ("max similarity change 2e-04", "max similarity change 3e-04"),  # one unit of the last digit
    ("mean cos 0.9996", "mean cos 0.9997"),
    ("ppl 43.24.", "ppl 43.25."),                     # a full stop ends the sentence, not the number
    ("tensor([ 0.1234, -0.5678])", "tensor([ 0.1235, -0.5677])"),
    ("loss 1.000e+02", "loss 1.0005e+02"),
])
def test_float_digits_within_tolerance_agree(stored, got):
    assert nc.first_difference(stored, got) is None


@pytest.mark.parametrize("stored, got", [
    ("code 213", "code 214"),                         # the worked example's code
    ("codes tensor([-43, 127])", "codes tensor([-42, 127])"),
    ("packed [177]", "packed [178]"),
    ("zero point -77", "zero point -76"),
    ("17,842,176 bytes", "17,842,177 bytes"),
    ("perplexity 43.24", "perplexity 43.67"),         # a perplexity 1 % off
    ("perplexity 43.240", "perplexity 43.300"),
    ("tensor([1., 2.])", "tensor([2., 2.])"),         # whole floats: no last-digit slack
    ("the scale is small", "the scale is large"),     # a changed word
    ("int8 weights", "int4 weights"),                 # digits inside words are text
    ("version 0.2.7", "version 0.2.8"),
    ("a 1.5 b", "a 1.5 b 2.5"),                       # a number more
    ("ppl 43.24", "ppl  43.24"),                       # spacing is text too
])
def test_real_differences_still_fail(stored, got):
    assert nc.first_difference(stored, got) is not None


def test_the_message_names_expected_and_got():
    why = nc.first_difference("perplexity 43.24", "perplexity 43.67")
    assert "expected 43.24, got 43.67" in why and "0.001 relative" in why
    assert "text differs" in nc.first_difference("the scale is small", "the scale is large")


def test_tokens_glued_to_words_or_versions_are_text():
    assert nc.split_numbers("fp16 W8A16 4096x4096 v0.2.7 ") == ["fp16 W8A16 4096x4096 v0.2.7 "]
    assert nc.split_numbers("x -1.5e-03, 7%.") == ["x ", "-1.5e-03", ", ", "7", "%."]


def test_cell_marker_loosens_only_what_it_names():
    tol = nc.tolerance_for("# NBVAL_TOLERANCE abs=0.5 on=%: argmax ties flip between kernels\nprint(1)")
    assert (tol.abs, tol.on, tol.reason) == (0.5, "%", "argmax ties flip between kernels")
    assert nc.first_difference("99.2% of 256 positions", "98.8% of 256 positions", tol) is None
    assert nc.first_difference("99.2% of 256 positions", "99.2% of 257 positions", tol) is not None
    assert nc.first_difference("ppl 43.24 (+0.09%)", "ppl 43.30 (+0.09%)", tol) is not None
    whole = nc.tolerance_for("# NBVAL_TOLERANCE integers on=%: whole percentages move by one")
    assert nc.first_difference("1128% higher", "1129% higher", whole) is None
    assert nc.first_difference("1128% higher", "1130% higher", whole) is not None
    assert nc.tolerance_for("print('no marker')") == nc.DEFAULT


@pytest.mark.parametrize("line, message", [
    ("# NBVAL_TOLERANCE rel=0.01", "needs a reason"),
    ("# NBVAL_TOLERANCE rel=0.01:   ", "needs a reason"),
    ("# NBVAL_TOLERANCE rel=lots: why", "rel: expected a number >= 0, got 'lots'"),
    ("# NBVAL_TOLERANCE rel=-1: why", "expected a number >= 0"),
    ("# NBVAL_TOLERANCE loose: why", "unknown option 'loose'"),
    ("# NBVAL_TOLERANCE rel=0.1: a\n# NBVAL_TOLERANCE rel=0.2: b", "one NBVAL_TOLERANCE line"),
])
def test_malformed_markers_say_what_is_wrong(line, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        nc.tolerance_for(line)


def _stored_texts(name):
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            for _, text in nc._text_fields(output):
                yield cell, text


@pytest.mark.parametrize("needle, wrong", [
    ("zero point -77", "zero point -76"),
    ("213", "214"),
    ("-43", "-42"),
    ("177", "176"),
])
def test_worked_numbers_in_the_stored_outputs_compare_exactly(needle, wrong):
    """Mutate the course's worked numbers inside the real stored outputs of notebooks 01, 03 and 08."""
    found = 0
    for name in ("01_data_types.ipynb", "03_quantization_theory.ipynb", "08_weight_packing.ipynb"):
        for cell, text in _stored_texts(name):
            if re.search(rf"(?<![\w.]){re.escape(needle)}(?![\w])", text):
                found += 1
                mutated = re.sub(rf"(?<![\w.]){re.escape(needle)}(?![\w])", wrong, text, count=1)
                assert nc.first_difference(text, mutated, nc.tolerance_for(cell.source)) is not None
    assert found, f"{needle} is no longer printed by notebooks 01/03/08"


def test_a_stored_perplexity_one_percent_off_fails():
    found = 0
    for cell, text in _stored_texts("04_llm_quantization.ipynb"):
        for match in re.finditer(r"perplexity +(\d+\.\d+)", text):
            found += 1
            wrong = f"{float(match[1]) * 1.01:.{len(match[1].split('.')[1])}f}"
            mutated = text[:match.start(1)] + wrong + text[match.end(1):]
            assert nc.first_difference(text, mutated, nc.tolerance_for(cell.source)) is not None
    assert found >= 5


def _notebook(cells):
    """A notebook whose code cells print `printed` while their stored output says `stored`."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for n, (source, stored) in enumerate(cells, start=1):
        cell = nbformat.v4.new_code_cell(source, execution_count=n)
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=stored)]
        nb.cells.append(cell)
    return nb


CASES = [  # (source, stored output, should pass)
    ("print('bf16 perplexity 43.258')", "bf16 perplexity 43.250\n", True),
    ("print('code', 213)", "code 214\n", False),
    ("print(f'perplexity {43.24 * 1.01:.2f}')", "perplexity 43.24\n", False),
    ("print('the scale is small')", "the scale is large\n", False),
    ("# NBVAL_TOLERANCE abs=0.5 on=%: argmax ties flip\nprint('99.2% of 256')", "98.8% of 256\n", True),
    ("# NBVAL_TOLERANCE abs=0.5 on=%: argmax ties flip\nprint('99.2% of 257')", "99.2% of 256\n", False),
    ("print(round(2 / 3, 4))", "0.6666\n", True),
]


def _run_nbval(path, *extra):
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                             "--nbval", "--nbval-current-env", *extra, str(path)],
                            capture_output=True, text=True, timeout=300, cwd=path.parent)
    outcome = {}
    for status, cell in re.findall(r"^(PASSED|FAILED) \S*::Cell (\d+)", result.stdout, flags=re.M):
        outcome[int(cell)] = status == "PASSED"
    assert outcome, result.stdout + result.stderr
    return outcome


def test_nbval_with_the_plugin_passes_digits_and_fails_regressions(tmp_path):
    path = tmp_path / "cases.ipynb"
    nbformat.write(_notebook([(s, o) for s, o, _ in CASES]), path)
    assert _run_nbval(path) == {i: ok for i, (_, _, ok) in enumerate(CASES)}
    # Without the plugin nbval compares characters: the float-digit cells fail too.
    plain = _run_nbval(path, "-p", "no:coursekit_nbcompare")
    assert not any(plain.values())
