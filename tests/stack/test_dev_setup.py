"""./dev's Python setup recovers from a half-made .venv instead of skipping it forever.

./dev is sourced (it then only defines its functions) in a copy of the
repository's top level, with a stand-in `python3` that records what it is asked
to do and makes a venv whose pip records its calls.
"""

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

STUB_PYTHON3 = """#!/bin/sh
echo "python3 $*" >> "$DEV_LOG"
[ "$1 $2" = "-m venv" ] || exit 1
mkdir -p .venv/bin
for tool in python pip; do
  printf '#!/bin/sh\\necho "%s $*" >> "$DEV_LOG"\\n' "$tool" > .venv/bin/$tool
  chmod +x .venv/bin/$tool
done
"""


def run_install_python(top: Path) -> list[str]:
    stub = top / "stub-bin"
    stub.mkdir(exist_ok=True)
    (stub / "python3").write_text(STUB_PYTHON3)
    (stub / "python3").chmod(0o755)
    log = top / "calls.log"
    log.write_text("")
    result = subprocess.run(["bash", "-c", "source ./dev && install_python"], cwd=top,
                            env={"PATH": f"{stub}:/usr/bin:/bin", "DEV_LOG": str(log), "HOME": str(top)},
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return log.read_text().splitlines()


def repo_copy(tmp_path: Path) -> Path:
    for name in ("dev", "pyproject.toml"):
        shutil.copy2(ROOT / name, tmp_path / name)
    return tmp_path


def test_a_venv_without_pip_is_made_again(tmp_path):
    top = repo_copy(tmp_path)
    # What a failed `python3 -m venv` leaves on Debian: bin/python, no pip.
    (top / ".venv/bin").mkdir(parents=True)
    (top / ".venv/bin/python").write_text("#!/bin/sh\n")
    (top / ".venv/bin/python").chmod(0o755)
    calls = run_install_python(top)
    assert "python3 -m venv --clear .venv" in calls
    assert "pip install -q -e .[test]" in calls
    assert (top / ".venv/.pyproject.sha").read_text().strip() == subprocess.run(
        ["sha256sum", "pyproject.toml"], cwd=top, capture_output=True, text=True).stdout.split()[0]


def test_a_complete_venv_is_kept(tmp_path):
    top = repo_copy(tmp_path)
    run_install_python(top)
    assert run_install_python(top) == [], "nothing is recreated or reinstalled"


# Commands every Debian system has (essential packages), and those the stack or ./dev itself
# brings: the rest must be in ./dev's PACKAGES, or a bare machine lacks them.
ESSENTIAL = {"sh", "bash", "rm", "sleep", "sha256sum", "mount", "umount", "service", "apt-get"}
RUN_COMMAND = re.compile(r'(?:subprocess\.(?:run|Popen|check_output|check_call)|Popen)\(\s*\[\s*"([^"/]+)"')


def dev_packages() -> dict[str, str]:
    text = (ROOT / "dev").read_text().split('PACKAGES="', 1)[1].split('"', 1)[0]
    return dict(pair.split(":", 1) for pair in text.split())


def test_every_command_the_tests_and_benchmarks_run_is_installed_by_dev():
    sources = [*ROOT.joinpath("tests").rglob("*.py"), *ROOT.joinpath("bench").iterdir()]
    used = {match for path in sources if path.is_file()
            for match in RUN_COMMAND.findall(path.read_text(errors="replace"))}
    # ./dev checks openssh-client by its ssh-keyscan; the package brings these too.
    provided = set(dev_packages()) | ESSENTIAL | {"ssh", "ssh-keygen", "ssh-agent", "ssh-add"}
    assert used - provided == set(), "commands a bare machine lacks: add them to ./dev's PACKAGES"
