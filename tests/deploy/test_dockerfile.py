"""deploy/Dockerfile: what it copies exists and it installs what the processes shell out to.

(No image is built here: the test machine has no container runtime.)
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "deploy" / "Dockerfile").read_text()


def test_base_image_and_tools():
    assert re.search(r"^FROM python:3\.11-slim$", DOCKERFILE, re.M)
    install = re.search(r"apt-get install[^\n]*", DOCKERFILE).group(0)
    for package in ("git", "openssh-client", "ca-certificates"):
        assert f" {package}" in install
    assert "/usr/local/bin/kubectl" in DOCKERFILE
    assert re.search(r"^USER 10001", DOCKERFILE, re.M)  # matches runAsUser in deploy/base


def test_copied_sources_exist_and_cover_the_packages():
    copied = re.findall(r"^COPY (\S+)", DOCKERFILE, re.M)
    for src in copied:
        assert (ROOT / src).exists(), src
    for package in ("pullbridge", "webhook", "worker"):
        assert package in copied
    ignore = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text()
    for src in copied:
        assert f"!{src.rstrip('/')}" in ignore.replace("/\n", "\n")
