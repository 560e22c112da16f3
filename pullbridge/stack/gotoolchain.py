"""A Go toolchain new enough to build Kubernetes, fetched from the Go module proxy when missing.

Why: Kubernetes' go.mod names the Go it needs (1.36 needs 1.26), and a bare
Debian machine has no Go or an old one (bookworm's golang-go is 1.19).  go.dev
is often unreachable where the module proxy is not, so this does what
``GOTOOLCHAIN`` does: download the module ``golang.org/toolchain`` at
``v0.0.1-go<VERSION>.linux-<arch>`` from ``$GOPROXY``, check it against the
checksum database (``h1:`` hash, the same one go.sum holds), unpack it under
``~/.cache/pullbridge/go/`` and check that ``go version`` answers the version
wanted.  Nothing is installed system-wide or inside the repository.
"""

from __future__ import annotations

import base64
import hashlib
import os
import platform
import re
import shutil
import stat
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from pullbridge.stack.procs import StackError

DEFAULT_PROXY = "https://proxy.golang.org"
DEFAULT_SUMDB = "sum.golang.org"
MODULE = "golang.org/toolchain"
# In an unpacked toolchain: each file the zip held, with its size.
MANIFEST = ".pullbridge-files"
_VERSION = re.compile(r"(?:go)?(\d+)\.(\d+)(?:\.(\d+))?(?:(rc|beta)(\d+))?$")


def proxy_base(env=os.environ) -> str:
    """The first HTTP(S) proxy in $GOPROXY (a list split by ',' or '|'), else proxy.golang.org."""
    for entry in re.split(r"[,|]", env.get("GOPROXY", "")):
        entry = entry.strip()
        if entry.startswith(("https://", "http://")):
            return entry.rstrip("/")
    return DEFAULT_PROXY


def parse_version(text: str) -> tuple[int, int, int, int, int]:
    """A sortable Go version: "go1.26.8", "1.26.0", "go1.26rc1", or a go.mod language version "1.26".

    As Go orders them: 1.26 (the language) < 1.26rc1 < 1.26.0 < 1.26.8.
    """
    match = _VERSION.match(text.strip())
    if not match:
        raise ValueError(f"not a Go version: {text!r}")
    major, minor, patch, stage, number = match.groups()
    if patch is not None:
        rank = 3
    elif stage:
        rank = {"beta": 1, "rc": 2}[stage]
    else:
        rank = 0
    return int(major), int(minor), int(patch or 0), rank, int(number or 0)


def wanted_toolchain(gomod: str) -> str:
    """The toolchain a go.mod asks for: its `toolchain` line, else its `go` line (as "go1.26.0")."""
    toolchain = re.search(r"^toolchain\s+(go\S+)\s*$", gomod, re.M)
    if toolchain:
        return toolchain.group(1)
    go_line = re.search(r"^go\s+(\S+)\s*$", gomod, re.M)
    if not go_line:
        raise StackError("the go.mod has no `go` line, so the Go version it needs is unknown")
    version = go_line.group(1)
    major, minor, patch, rank, _ = parse_version(version)
    if rank == 0 and (major, minor) >= (1, 21):
        version = f"{major}.{minor}.0"  # from 1.21 on, "1.26" is a language, its first release 1.26.0
    return f"go{version}"


def needs_download(found: str | None, wanted: str) -> bool:
    """Whether the Go found on PATH (its version, or None) is missing or older than wanted."""
    if found is None:
        return True
    try:
        return parse_version(found) < parse_version(wanted)
    except ValueError:  # "devel ..." or something else unknown: use a release
        return True


def goarch(machine: str | None = None) -> str:
    machine = (machine or platform.machine()).lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if arch is None:
        raise StackError(f"no Go toolchain for this machine ({machine}); install Go yourself")
    return arch


def module_version(toolchain: str, arch: str) -> str:
    return f"v0.0.1-{toolchain}.linux-{arch}"


def toolchain_url(proxy: str, toolchain: str, arch: str) -> str:
    return f"{proxy}/{MODULE}/@v/{module_version(toolchain, arch)}.zip"


def go_version(go: str | Path) -> str | None:
    """The version a go binary reports ("go1.26.8"), or None if it does not run."""
    try:
        out = subprocess.run([str(go), "version"], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "GOTOOLCHAIN": "local"}, cwd="/").stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.match(r"go version (\S+)", out)
    return match.group(1) if match else None


def zip_hash(path: Path) -> str:
    """The module zip's "h1:" hash as the checksum database records it (Go's dirhash.Hash1)."""
    summary = hashlib.sha256()
    with zipfile.ZipFile(path) as archive:
        for name in sorted(i.filename for i in archive.infolist() if not i.is_dir()):
            digest = hashlib.sha256()
            with archive.open(name) as member:
                for block in iter(lambda: member.read(1 << 20), b""):
                    digest.update(block)
            summary.update(f"{digest.hexdigest()}  {name}\n".encode())
    return "h1:" + base64.b64encode(summary.digest()).decode()


def recorded_hash(proxy: str, version: str, env=os.environ) -> str | None:
    """The checksum database's h1 for the toolchain zip, asked through the proxy as go does.

    None when GOSUMDB=off: the zip is then checked only by opening it and running it.
    """
    sumdb = (env.get("GOSUMDB") or DEFAULT_SUMDB).split()[0].split("+")[0]
    if sumdb == "off":
        return None
    urls = [f"{proxy}/sumdb/{sumdb}/lookup/{MODULE}@{version}", f"https://{sumdb}/lookup/{MODULE}@{version}"]
    errors = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:
                text = resp.read().decode()
        except (OSError, ValueError) as exc:
            errors.append(f"{url}: {exc}")
            continue
        for line in text.splitlines():
            parts = line.split()
            if parts[:2] == [MODULE, version] and len(parts) == 3:
                return parts[2]
        errors.append(f"{url}: no h1 line for {MODULE}@{version}")
    raise StackError(f"cannot check the Go toolchain against the checksum database {sumdb} "
                     f"({'; '.join(errors)}); set GOSUMDB=off to skip the check")


def _download(url: str, dest: Path) -> int:
    partial = dest.with_name(dest.name + ".partial")
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(partial, "wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
    except (OSError, ValueError) as exc:
        partial.unlink(missing_ok=True)
        raise StackError(f"downloading the Go toolchain from {url} failed: {exc}") from None
    os.replace(partial, dest)
    return dest.stat().st_size


def _unpack(zip_path: Path, prefix: str, dest: Path) -> None:
    """Unpack the module zip's files (all under "module@version/") into dest, executables made so,
    and list them with their sizes in dest/MANIFEST."""
    sizes = {}
    with zipfile.ZipFile(zip_path) as archive:
        for info in archive.infolist():
            name = info.filename
            if not name.startswith(prefix) or ".." in name.split("/") or info.is_dir():
                raise StackError(f"the Go toolchain zip {zip_path} holds an unexpected entry {name!r}")
            target = dest / name[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            sizes[name[len(prefix):]] = info.file_size
    (dest / MANIFEST).write_text("".join(f"{size} {name}\n" for name, size in sizes.items()))
    # Module zips keep no file modes; go sets these bits itself after a GOTOOLCHAIN download.
    for sub in ("bin", "pkg/tool"):
        for path in (dest / sub).rglob("*"):
            if path.is_file():
                path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _unpacked_whole(home: Path) -> bool:
    """Every file the toolchain zip held is in home, at its size (a damaged copy, or one
    unpacked before the list was kept, is fetched again rather than failing a build)."""
    try:
        for line in (home / MANIFEST).read_text().splitlines():
            size, name = line.split(" ", 1)
            if (home / name).stat().st_size != int(size):
                return False
    except (OSError, ValueError):
        return False
    return True


def ensure_go(wanted: str, cache: Path, log=print, env=os.environ) -> Path:
    """The bin directory of a Go at least as new as `wanted`: PATH's, else one fetched into cache."""
    found = shutil.which("go", path=env.get("PATH"))
    found_version = go_version(found) if found else None
    if found and not needs_download(found_version, wanted):
        return Path(found).parent
    arch = goarch()
    home = cache / f"{wanted}.linux-{arch}"
    if go_version(home / "bin" / "go") == wanted:
        if _unpacked_whole(home):
            return home / "bin"
        log(f"the Go toolchain in {home} is incomplete (a file is missing or cut short): "
            f"fetching it again")
    proxy = proxy_base(env)
    version = module_version(wanted, arch)
    url = toolchain_url(proxy, wanted, arch)
    have = f"Go {found_version} at {found}" if found else "no Go on PATH"
    log(f"{have}; Kubernetes needs {wanted}: downloading {url}")
    cache.mkdir(parents=True, exist_ok=True)
    zip_path = cache / f"{wanted}.linux-{arch}.zip"
    started = time.monotonic()
    size = _download(url, zip_path)
    try:
        expected = recorded_hash(proxy, version, env)
        try:
            actual = zip_hash(zip_path)
        except zipfile.BadZipFile as exc:
            raise StackError(f"the Go toolchain from {url} is not a valid zip: {exc}") from None
        if expected is not None and actual != expected:
            raise StackError(f"the Go toolchain from {url} does not match the checksum database "
                             f"(got {actual}, expected {expected})")
        partial = home.with_name(home.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        try:
            _unpack(zip_path, f"{MODULE}@{version}/", partial)
            answered = go_version(partial / "bin" / "go")
            if answered != wanted:
                raise StackError(f"the Go toolchain from {url} answers `go version` with {answered}, "
                                 f"not {wanted}")
            shutil.rmtree(home, ignore_errors=True)
            os.replace(partial, home)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    finally:
        zip_path.unlink(missing_ok=True)
    log(f"Go {wanted} ready in {home} ({size / 1e6:.0f} MB in {time.monotonic() - started:.0f}s)")
    return home / "bin"
