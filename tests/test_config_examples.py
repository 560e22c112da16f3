"""Every configuration the project ships passes `pullbridge config check`.

Why it exists: the README, docs/ and deploy/ teach the configuration by example, and the
configuration is validated strictly (unknown keys, a `repository` that cannot be derived, an
empty `events`, a `dedup_ttl` not over twice `signature_tolerance` are all errors).  An example
the code refuses would be copied by an operator and fail at start, so each one is checked here:

* ``deploy/base/pullbridge.yaml`` through the real command, its secrets set to dummy values;
* each document's ```yaml blocks whose top-level keys are configuration sections, merged in
  order (a later block's repository of the same name adds to the earlier one, as the docs
  continue an example), with ``parse_config`` (what `config check --no-secrets` runs).  A
  repository in a block marked ``# ...`` ("the keys shown above") gets a URL, provider and
  secret only where it names none.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from pullbridge.config import Config, ConfigError, parse_config

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ["README.md", "deploy/README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]
YAML_BLOCK = re.compile(r"^( *)```ya?ml\n(.*?)^\1```", re.M | re.S)
ELIDED = re.compile(r"^\s*# \.\.\.\s*$", re.M)
ELIDED_REPO_KEYS = {"url": "https://github.com/acme/example.git", "provider": "github",
                    "secret_env": "EXAMPLE_WEBHOOK_SECRET"}


def config_blocks(text: str) -> list[dict]:
    """The ```yaml blocks of ``text`` that are Pullbridge configuration, as loaded mappings."""
    blocks = []
    for match in YAML_BLOCK.finditer(text):
        indent = len(match.group(1))
        body = "\n".join(line[indent:] for line in match.group(2).splitlines())
        data = YAML(typ="safe", pure=True).load(body)
        if not isinstance(data, dict) or not data or not set(data) <= set(Config.model_fields):
            continue  # a manifest, a kustomization, a payload: not a Pullbridge configuration
        if ELIDED.search(body):
            for repo in data.get("repos", []):
                for key, value in ELIDED_REPO_KEYS.items():
                    repo.setdefault(key, value)
        blocks.append(data)
    return blocks


def merged(blocks: list[dict]) -> dict:
    """One configuration from a document's blocks, in order; repositories merged by name."""
    config: dict = {}
    for block in blocks:
        for key, value in block.items():
            if key == "repos":
                repos = {repo["name"]: repo for repo in config.get("repos", [])}
                for repo in value:
                    repos[repo["name"]] = {**repos.get(repo["name"], {}), **repo}
                config["repos"] = list(repos.values())
            elif isinstance(value, dict):
                config[key] = {**config.get(key, {}), **value}
            else:
                config[key] = value
    return config


EXAMPLES = {document: blocks for document in DOCUMENTS
            if (blocks := config_blocks((ROOT / document).read_text()))}


@pytest.mark.parametrize("document", sorted(EXAMPLES))
def test_the_configuration_examples_of_each_document_are_valid(document):
    try:
        parse_config(merged(EXAMPLES[document]), document)
    except ConfigError as exc:
        pytest.fail(f"{document}: an example the configuration refuses: {exc}")


def test_the_examples_are_found():
    """So a change to how the documents write their blocks cannot leave the test above with nothing."""
    assert {"README.md", "docs/drift.md", "docs/notifications.md", "docs/pages.md"} <= set(EXAMPLES)
    assert any(repo.get("images") for block in EXAMPLES["README.md"] for repo in block.get("repos", []))


def test_an_example_the_configuration_refuses_is_reported():
    text = "```yaml\nrepos:\n  - name: demo\n    # ...\n    events: []\n```\n"
    with pytest.raises(ConfigError, match=r"repos\[0\]\.events"):
        parse_config(merged(config_blocks(text)))


def test_the_deploy_config_passes_config_check(tmp_path):
    path = ROOT / "deploy" / "base" / "pullbridge.yaml"
    names = re.findall(r"^\s*\w+_env:\s*(\S+)", path.read_text(), re.M)
    assert names, "the shipped config names its secrets by environment variable"
    env = {**os.environ, **{name: f"dummy-{name.lower()}" for name in names}, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "pullbridge", "config", "check", str(path)],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"{path}: ok")
