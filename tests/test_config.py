"""Configuration: strict validation with key paths, secrets never shown."""

import pytest

from pullbridge.cli import main
from pullbridge.config import ConfigError, parse_config, parse_duration

GOOD = {"repos": [{"name": "demo", "url": "file:///srv/git/demo.git", "provider": "github",
                   "repository": "acme/demo", "secret_env": "DEMO_SECRET", "interval": "10s", "retries": 5}]}


def test_valid_config_and_per_repo_job_settings():
    config = parse_config(GOOD)
    repo = config.repo("demo")
    assert repo.interval == 10
    assert config.repo_jobs(repo).retries == 5
    assert config.repo_jobs(repo).job_timeout == config.jobs.job_timeout


@pytest.mark.parametrize("change, path, message", [
    ({"bogus": 1}, "repos[0].bogus", "unknown key"),
    ({"provider": "svn"}, "repos[0].provider", "github"),
    ({"url": "ftp://x"}, "repos[0].url", "URL"),
    ({"branch": "a..b"}, "repos[0].branch", "branch"),
    ({"path": "../etc"}, "repos[0].path", "inside"),
    ({"interval": "2s"}, "repos[0].interval", "at least 10s"),
    ({"name": "Bad_Name"}, "repos[0].name", "lowercase"),
    ({"name": "deploy\n"}, "repos[0].name", "lowercase"),
])
def test_errors_name_their_key_path(change, path, message):
    data = {"repos": [{**GOOD["repos"][0], **change}]}
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert any(p == path and message in m for p, m in err.value.problems), err.value.problems


def test_secret_source_is_required_exactly_once():
    repo = {k: v for k, v in GOOD["repos"][0].items() if k != "secret_env"}
    with pytest.raises(ConfigError, match="exactly one of secret_env or secret_file"):
        parse_config({"repos": [repo]})


def test_unknown_top_level_key_and_duplicate_names():
    with pytest.raises(ConfigError, match="reposs: unknown key"):
        parse_config({"reposs": []})
    with pytest.raises(ConfigError) as err:
        parse_config({"repos": GOOD["repos"] * 2})
    assert err.value.problems == [("repos[1].name", "repository name 'demo' is already used by repos[0]")]


def test_repo_finds_each_repository_by_name_and_nothing_else():
    repos = [{**GOOD["repos"][0], "name": f"repo-{i}"} for i in range(50)]
    config = parse_config({"repos": repos})
    assert [config.repo(f"repo-{i}") for i in range(50)] == config.repos
    assert config.repo("demo") is None and config.repo("") is None
    copy = config.model_copy(deep=True)
    assert copy.repo("repo-7") is copy.repos[7]


@pytest.mark.parametrize("text, seconds", [("10s", 10), ("5m", 300), ("1h30m", 5400), (7, 7)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_config_check_command(tmp_path, capsys, monkeypatch):
    path = tmp_path / "c.yaml"
    path.write_text("repos:\n- name: demo\n  url: file:///x\n  provider: gitlab\n  repository: g/demo\n"
                    "  secret_env: S\n  colour: red\n")
    assert main(["config", "check", str(path)]) == 2
    out, err = capsys.readouterr()  # errors go to stderr, like every verb's
    assert out == "" and f"pullbridge: {path}: repos[0].colour: unknown key" in err

    path.write_text("repos:\n- name: demo\n  url: file:///x\n  provider: gitlab\n  repository: g/demo\n"
                    "  secret_env: S\n")
    monkeypatch.delenv("S", raising=False)
    assert main(["config", "check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"pullbridge: {path}: repos[0].secret_env: environment variable S is not set\n"
    assert main(["config", "check", str(tmp_path / "missing.yaml")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"pullbridge: {tmp_path / 'missing.yaml'}: ")
    monkeypatch.setenv("S", "hunter2-very-secret")
    assert main(["config", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ok (1 repositories: demo)" in out
    assert "hunter2" not in out


@pytest.mark.parametrize("text, message", [
    ("repos: [\n", "invalid YAML at line 2, column 1: expected the node content, but found '<stream end>' "
                   "(while parsing a flow node at line 2, column 1)"),
    ("repos: []\nrepos: []\n", 'invalid YAML at line 2, column 1: found duplicate key "repos" with value "[]" '
                              '(original value: "[]") (while constructing a mapping at line 1, column 1)'),
    ("server:\n  public_url: \"https://x\n", "invalid YAML at line 3, column 1: found unexpected end of stream "
                                             "(while scanning a quoted scalar at line 2, column 15)"),
    ("jobs: {retries: !!int x}\n", "invalid YAML: a value does not match its explicit tag"),
])
def test_a_yaml_mistake_is_one_line_naming_the_file_and_line(tmp_path, capsys, text, message):
    """The parser's own text spans lines (quoting the file); every verb prints one line, exit 2."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert main(["config", "check", str(path)]) == 2
    assert capsys.readouterr() == ("", f"pullbridge: {path}: {message}\n")
    assert main(["history", "app", "--config", str(path)]) == 2
    assert capsys.readouterr() == ("", f"pullbridge: configuration: {path}: {message}\n")


def test_a_config_file_that_is_not_utf8_is_named_as_such(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"repos: [] # caf\xe9\n")
    assert main(["config", "check", str(path)]) == 2
    assert capsys.readouterr() == ("", f"pullbridge: {path}: cannot read {path}: not UTF-8 text\n")


def test_the_readme_configuration_example_is_valid():
    """The example operators copy from the README must pass `config check` (docs do not rot)."""
    import re
    from pathlib import Path

    from ruamel.yaml import YAML

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index("## Configuration"):readme.index("## Operating it")]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    config = parse_config(YAML(typ="safe", pure=True).load(block))
    assert config.repo("fluxdemo").status is not None
