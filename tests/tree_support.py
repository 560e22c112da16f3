"""Files for render and kustomize tests: a tree written from {relative path: text}, and the
small documents several of those tests build trees from."""

from __future__ import annotations

from pathlib import Path

CM = """apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
data:
  k: v
"""
COMPONENT = "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n"


def write(root: Path, files: dict[str, str]) -> None:
    """Write each file below ``root``, making the folders it needs."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
