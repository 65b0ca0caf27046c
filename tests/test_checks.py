"""One message style for bad arguments: "name: expected ..., got ..."."""
import pytest
import torch

from coursekit import checks


@pytest.mark.parametrize("call, error, message", [
    (lambda: checks.check_int(9, "bits", 2, 8), ValueError, "bits: expected an int from 2 to 8, got 9"),
    (lambda: checks.check_int(True, "bits", 2, 8), TypeError, "bits: expected an int from 2 to 8, got bool"),
    (lambda: checks.check_int(4.0, "bits", 2, 8), TypeError, "bits: expected an int from 2 to 8, got float"),
    (lambda: checks.check_int(0, "group_size", low=1), ValueError, "group_size: expected an int >= 1, got 0"),
    (lambda: checks.check_number("1", "x"), TypeError, "x: expected a number, got str"),
    (lambda: checks.check_number(0, "interval", positive=True), ValueError,
     "interval: expected a positive number, got 0"),
    (lambda: checks.check_number(float("nan"), "alpha", 0, 1), ValueError, "alpha: expected a number from 0 to 1"),
    (lambda: checks.check_number(torch.ones(3), "x"), TypeError, "x: expected a number, got Tensor"),
    (lambda: checks.check_choice(3, "bits", (1, 2, 4)), ValueError, "bits: expected one of 1, 2, 4, got 3"),
    (lambda: checks.check_choice(True, "bits", (1, 2, 4)), ValueError, "got True"),
    (lambda: checks.check_choice([1], "mode", ("a",)), ValueError, "mode: expected one of 'a', got [1]"),
    (lambda: checks.check_instance(3, "model", torch.nn.Module, "a torch.nn.Module"), TypeError,
     "model: expected a torch.nn.Module, got int"),
    (lambda: checks.check_tensor([1.0], "x"), TypeError, "x: expected a torch.Tensor, got list"),
    (lambda: checks.check_tensor(torch.ones(2, dtype=torch.int8), "x", floating=True), ValueError,
     "x: expected a floating-point torch.Tensor, got a tensor of dtype torch.int8"),
    (lambda: checks.check_tensor(torch.ones(2), "w", ndim=2), ValueError, "w: expected a 2-D tensor, got shape (2,)"),
])
def test_messages(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)


def test_good_values_come_back():
    assert checks.check_int(torch.tensor(3).item(), "bits", 2, 8) == 3
    assert checks.check_number(torch.tensor(0.5), "alpha", 0, 1) == 0.5
    assert checks.check_choice("per_group", "granularity", ("per_tensor", "per_group")) == "per_group"
    t = torch.ones(2, 3)
    assert checks.check_tensor(t, "w", floating=True, ndim=2) is t
