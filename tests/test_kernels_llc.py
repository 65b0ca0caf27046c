"""coursekit.kernels.llc_bytes (kernels/cpu.py): the size of the last-level cache, and where it was read."""
import subprocess

from coursekit import kernels
from coursekit.kernels import cpu


def _cache(root, *entries):
    for i, (level, kind, size) in enumerate(entries):
        d = root / f"index{i}"
        d.mkdir()
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")


def test_sysfs_gives_the_highest_level_that_holds_data(tmp_path):
    _cache(tmp_path, (1, "Data", "32K"), (1, "Instruction", "32K"), (2, "Unified", "1024K"),
           (3, "Unified", "32768K"))
    assert kernels.llc_bytes(str(tmp_path)) == (32 * 2 ** 20, "L3, from sysfs")


def test_an_instruction_cache_never_counts(tmp_path):
    _cache(tmp_path, (1, "Data", "48K"), (2, "Unified", "2048K"), (3, "Instruction", "64M"))
    assert kernels.llc_bytes(str(tmp_path)) == (2 * 2 ** 20, "L2, from sysfs")


def test_without_sysfs_lscpu_answers_per_instance(tmp_path, monkeypatch):
    out = "L1d cache: 65536 (2 instances)\nL2 cache: 2097152 (2 instances)\nL3 cache: 67108864 (2 instances)\n"
    monkeypatch.setattr(cpu, "_run", lambda *cmd: out if cmd[0] == "lscpu" else "")
    assert kernels.llc_bytes(str(tmp_path / "missing")) == (32 * 2 ** 20, "L3, from lscpu")


def test_macos_sysctl_without_l3_gives_l2(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu, "_run", lambda *cmd: {"hw.l2cachesize": "4194304\n"}.get(cmd[-1], "")
                        if cmd[0] == "sysctl" else "")
    assert kernels.llc_bytes(str(tmp_path / "missing")) == (4 * 2 ** 20, "L2, from sysctl")


def test_nothing_answers_then_the_size_is_assumed_and_says_so(tmp_path, monkeypatch):
    def no_such_program(*args, **kwargs):
        raise FileNotFoundError("no such program")
    monkeypatch.setattr(subprocess, "run", no_such_program)
    size, source = kernels.llc_bytes(str(tmp_path / "missing"))
    assert size == kernels.ASSUMED_LLC_BYTES and source == "unknown: assumed 32 MiB"


def test_this_machine_answers_with_a_plausible_size():
    size, source = kernels.llc_bytes()
    assert 256 * 2 ** 10 <= size <= 2 ** 31 and source
