"""Where optimum-quanto's int4/int2 weights run: never a silent multi-minute build (faked CUDA here)."""
import pytest
import torch

from coursekit import warmup


@pytest.fixture
def fake(monkeypatch):
    """Record what quanto_device says and builds; `built` and `fails` set the fake extensions' state."""
    state = {"built": set(), "fails": set(), "events": []}

    def built(name):
        return name in state["built"]

    def build(name):
        state["events"].append(("build", name))
        if name in state["fails"]:
            raise RuntimeError("Error building extension 'quanto_cuda': nvcc fatal")
        state["built"].add(name)
        return 42.0

    monkeypatch.setattr(warmup, "extension_built", built)
    monkeypatch.setattr(warmup, "build_extension", build)
    monkeypatch.delenv(warmup.COMPILE_CUDA_ENV, raising=False)
    state["say"] = lambda text: state["events"].append(("say", text))
    return state


def _said(state):
    return " | ".join(text for kind, text in state["events"] if kind == "say")


def test_gpu_without_built_kernels_uses_the_cpu_and_says_why(fake):
    fake["built"].add("quanto_cpp")
    assert warmup.quanto_device(torch.device("cuda"), say=fake["say"]) == torch.device("cpu")
    said = _said(fake)
    assert "run on the CPU" in said and "COURSEKIT_QUANTO_CUDA=1" in said
    assert ("build", "quanto_cuda") not in fake["events"]


def test_gpu_with_built_kernels_stays_on_the_gpu_silently(fake):
    fake["built"].update({"quanto_cuda", "quanto_cpp"})
    assert warmup.quanto_device("cuda", say=fake["say"]) == torch.device("cuda")
    assert fake["events"] == []


def test_asked_to_compile_announces_before_building(fake, monkeypatch):
    monkeypatch.setenv(warmup.COMPILE_CUDA_ENV, "1")
    assert warmup.quanto_device("cuda", say=fake["say"]) == torch.device("cuda")
    kinds = [kind for kind, _ in fake["events"]]
    assert kinds == ["say", "build", "say"]
    assert "Compiling optimum-quanto's CUDA kernels" in fake["events"][0][1]
    assert "done in 42 s" in fake["events"][2][1]


def test_failed_gpu_build_falls_back_to_the_cpu(fake):
    fake["fails"].add("quanto_cuda")
    assert warmup.quanto_device("cuda", compile_gpu=True, say=fake["say"]) == torch.device("cpu")
    said = _said(fake)
    assert "The build failed (RuntimeError: Error building extension 'quanto_cuda': nvcc fatal)" in said
    assert ("build", "quanto_cpp") in fake["events"]  # the CPU kernels it falls back on, announced
    assert "C++ kernels" in said


def test_cpu_build_is_announced_and_its_failure_explained(fake):
    assert warmup.quanto_device("cpu", say=fake["say"]) == torch.device("cpu")
    assert [kind for kind, _ in fake["events"]] == ["say", "build", "say"]
    fake["built"].clear()
    fake["fails"].add("quanto_cpp")
    with pytest.raises(RuntimeError, match="needs a C\\+\\+ compiler"):
        warmup.quanto_device("cpu", say=fake["say"])


def test_real_cpu_extension_is_ready_after_setup():
    """`make setup` warmed it: asking costs no compile and prints nothing (so notebooks stay quiet)."""
    said = []
    assert warmup.quanto_device("cpu", say=said.append) == torch.device("cpu")
    assert said == []
    assert warmup.extension_built("quanto_cpp")
    assert not warmup.extension_built("no_such_extension")
