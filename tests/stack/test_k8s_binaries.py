"""Cached Kubernetes binaries that are missing or damaged are built again, saying why.

A truncated binary (a copy cut short, a full disk) exists but crashes or is refused
by the kernel: taken for whole, it would fail `stack up` with a signal number and
the log of an earlier run.  The build itself is replaced here by one that writes
stand-ins answering the version, as the real build's binaries do.
"""

from pathlib import Path

import pullbridge.stack as stack_module
from pullbridge.stack import K8S_BINARIES, K8S_VERSION, ensure_k8s_binaries


def write_binaries(bin_dir: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in K8S_BINARIES:
        (bin_dir / name).write_text(f"#!/bin/sh\necho 'Kubernetes {K8S_VERSION}'\n")
        (bin_dir / name).chmod(0o755)


def recording_build(monkeypatch) -> list[Path]:
    builds = []

    def build(bin_dir, log=print):
        builds.append(bin_dir)
        write_binaries(bin_dir)

    monkeypatch.setattr(stack_module, "build_k8s_binaries", build)
    return builds


def test_whole_binaries_are_kept(tmp_path, monkeypatch):
    builds = recording_build(monkeypatch)
    write_binaries(tmp_path / K8S_VERSION)
    ensure_k8s_binaries(tmp_path / K8S_VERSION, log=lambda m: None)
    assert builds == []


def test_a_truncated_binary_is_built_again_and_the_log_says_which(tmp_path, monkeypatch):
    builds = recording_build(monkeypatch)
    bin_dir = tmp_path / K8S_VERSION
    write_binaries(bin_dir)
    (bin_dir / "kube-controller-manager").write_bytes(b"")  # cut short: the kernel refuses it
    messages = []
    ensure_k8s_binaries(bin_dir, log=messages.append)
    assert builds == [bin_dir]
    assert messages[0].startswith(f"the Kubernetes binaries in {bin_dir} are damaged (kube-controller"
                                  f"-manager does not run (")
    assert messages[0].endswith("): building them again")


def test_a_binary_that_crashes_is_built_again(tmp_path, monkeypatch):
    builds = recording_build(monkeypatch)
    bin_dir = tmp_path / K8S_VERSION
    write_binaries(bin_dir)
    (bin_dir / "kubectl").write_text("#!/bin/sh\nkill -SEGV $$\n")
    messages = []
    ensure_k8s_binaries(bin_dir, log=messages.append)
    assert builds == [bin_dir]
    assert (f"kubectl does not answer `version --client` with {K8S_VERSION} (it was killed by SIGSEGV)"
            in messages[0])


def test_a_first_build_says_nothing_of_damage(tmp_path, monkeypatch):
    builds = recording_build(monkeypatch)
    messages = []
    ensure_k8s_binaries(tmp_path / K8S_VERSION, log=messages.append)
    assert builds == [tmp_path / K8S_VERSION] and messages == []
