"""A bare machine gets the Go that Kubernetes' go.mod names, from the module proxy.

The download is tested against a local stand-in for the proxy and the checksum
database, serving a tiny toolchain zip laid out as the real one is.
"""

import os
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pullbridge.stack import gotoolchain
from pullbridge.stack.procs import StackError

K8S_GOMOD = "module k8s.io/kubernetes\n\ngo 1.26.0\n\ngodebug default=go1.26\n\nrequire (\n)\n"


@pytest.mark.parametrize("found, wanted, download", [
    (None, "go1.26.0", True),
    ("go1.19.8", "go1.26.0", True),          # Debian bookworm's golang-go
    ("go1.25.9", "go1.26.0", True),
    ("go1.26rc2", "go1.26.0", True),
    ("go1.26.0", "go1.26.0", False),
    ("go1.26.8", "go1.26.0", False),
    ("go1.27.0", "go1.26.0", False),
    ("devel go1.27-abc", "go1.26.0", True),  # unknown: take the release
])
def test_which_go_needs_a_download(found, wanted, download):
    assert gotoolchain.needs_download(found, wanted) is download


def test_versions_sort_as_go_sorts_them():
    order = ["1.26", "go1.26beta1", "go1.26rc1", "go1.26rc2", "go1.26.0", "go1.26.8", "go1.27.0"]
    assert sorted(order, key=gotoolchain.parse_version) == order
    with pytest.raises(ValueError, match="not a Go version"):
        gotoolchain.parse_version("banana")


def test_the_wanted_toolchain_comes_from_the_go_mod():
    assert gotoolchain.wanted_toolchain(K8S_GOMOD) == "go1.26.0"
    assert gotoolchain.wanted_toolchain(K8S_GOMOD + "toolchain go1.26.3\n") == "go1.26.3"
    assert gotoolchain.wanted_toolchain("module m\ngo 1.22\n") == "go1.22.0"
    assert gotoolchain.wanted_toolchain("module m\ngo 1.20\n") == "go1.20"
    with pytest.raises(StackError, match="no `go` line"):
        gotoolchain.wanted_toolchain("module m\n")


def test_the_url_is_the_one_gotoolchain_uses():
    assert gotoolchain.toolchain_url("https://proxy.golang.org", "go1.26.0", "amd64") == (
        "https://proxy.golang.org/golang.org/toolchain/@v/v0.0.1-go1.26.0.linux-amd64.zip")
    assert gotoolchain.goarch("x86_64") == "amd64" and gotoolchain.goarch("aarch64") == "arm64"
    with pytest.raises(StackError, match="riscv64"):
        gotoolchain.goarch("riscv64")


@pytest.mark.parametrize("value, proxy", [
    ("", "https://proxy.golang.org"),
    ("https://proxy.golang.org,direct", "https://proxy.golang.org"),
    ("direct", "https://proxy.golang.org"),
    ("off|https://goproxy.example/", "https://goproxy.example"),
])
def test_the_proxy_is_the_first_url_in_goproxy(value, proxy):
    assert gotoolchain.proxy_base({"GOPROXY": value}) == proxy


def fake_go(directory: Path, version: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    go = directory / "go"
    go.write_text(f"#!/bin/sh\necho 'go version {version} linux/amd64'\n")
    go.chmod(0o755)
    return directory


def toolchain_zip(path: Path, toolchain: str, answers: str | None = None) -> None:
    """A zip laid out like golang.org/toolchain's: module@version/ prefix, no file modes."""
    prefix = f"golang.org/toolchain@{gotoolchain.module_version(toolchain, gotoolchain.goarch())}/"
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in {"bin/go": f"#!/bin/sh\necho 'go version {answers or toolchain} linux/amd64'\n",
                           "pkg/tool/linux_amd64/compile": "#!/bin/sh\n", "VERSION": toolchain}.items():
            info = zipfile.ZipInfo(prefix + name)
            info.external_attr = 0o644 << 16
            archive.writestr(info, text)


class FakeProxy:
    """Serves one toolchain zip and its checksum-database line; counts the zip downloads."""

    def __init__(self, zip_path: Path, h1: str):
        self.zip_path, self.h1, self.zip_requests = zip_path, h1, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                if self.path.endswith(".zip"):
                    outer.zip_requests.append(self.path)
                    body = outer.zip_path.read_bytes()
                elif "/sumdb/sum.golang.org/lookup/" in self.path:
                    module, _, version = self.path.split("/lookup/", 1)[1].partition("@")
                    body = f"1234\n{module} {version} {outer.h1}\n{module} {version}/go.mod h1:x=\n".encode()
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(tmp_path):
    zip_path = tmp_path / "served.zip"
    toolchain_zip(zip_path, "go1.99.0")
    served = FakeProxy(zip_path, gotoolchain.zip_hash(zip_path))
    yield served
    served.close()


def test_an_old_go_on_path_gets_the_wanted_toolchain_downloaded_once(tmp_path, proxy):
    env = {"PATH": str(fake_go(tmp_path / "old", "go1.19.8")), "GOPROXY": f"{proxy.url},direct"}
    cache = tmp_path / "cache"
    messages = []
    bin_dir = gotoolchain.ensure_go("go1.99.0", cache, messages.append, env=env)
    assert bin_dir == cache / f"go1.99.0.linux-{gotoolchain.goarch()}" / "bin"
    assert proxy.zip_requests == [
        f"/golang.org/toolchain/@v/v0.0.1-go1.99.0.linux-{gotoolchain.goarch()}.zip"]
    assert os.access(bin_dir / "go", os.X_OK)
    assert os.access(bin_dir.parent / "pkg/tool/linux_amd64/compile", os.X_OK)
    assert gotoolchain.go_version(bin_dir / "go") == "go1.99.0"
    assert "Go go1.19.8" in messages[0] and "needs go1.99.0" in messages[0]
    assert sorted(p.name for p in cache.iterdir()) == [bin_dir.parent.name], "no zip or partial left"

    assert gotoolchain.ensure_go("go1.99.0", cache, messages.append, env=env) == bin_dir
    assert len(proxy.zip_requests) == 1, "a cached toolchain is not downloaded again"


def test_no_go_at_all_gets_the_toolchain_too(tmp_path, proxy):
    env = {"PATH": str(tmp_path / "empty"), "GOPROXY": proxy.url}
    bin_dir = gotoolchain.ensure_go("go1.99.0", tmp_path / "cache", lambda m: None, env=env)
    assert gotoolchain.go_version(bin_dir / "go") == "go1.99.0"


def test_a_new_enough_go_on_path_is_used_as_it_is(tmp_path, proxy):
    env = {"PATH": str(fake_go(tmp_path / "new", "go1.99.4")), "GOPROXY": proxy.url}
    assert gotoolchain.ensure_go("go1.99.0", tmp_path / "cache", lambda m: None, env=env) == tmp_path / "new"
    assert proxy.zip_requests == []


def test_a_zip_that_does_not_match_the_checksum_database_is_refused(tmp_path, proxy):
    proxy.h1 = "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    env = {"PATH": str(tmp_path / "empty"), "GOPROXY": proxy.url}
    with pytest.raises(StackError, match="does not match the checksum database"):
        gotoolchain.ensure_go("go1.99.0", tmp_path / "cache", lambda m: None, env=env)
    assert list((tmp_path / "cache").iterdir()) == [], "nothing half-installed is left"


def test_a_toolchain_answering_another_version_is_refused(tmp_path, proxy):
    toolchain_zip(proxy.zip_path, "go1.99.0", answers="go1.98.0")
    proxy.h1 = gotoolchain.zip_hash(proxy.zip_path)
    env = {"PATH": str(tmp_path / "empty"), "GOPROXY": proxy.url}
    with pytest.raises(StackError, match="answers `go version` with go1.98.0, not go1.99.0"):
        gotoolchain.ensure_go("go1.99.0", tmp_path / "cache", lambda m: None, env=env)
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_broken_zip_is_a_clear_error(tmp_path, proxy):
    proxy.zip_path.write_bytes(b"not a zip")
    env = {"PATH": str(tmp_path / "empty"), "GOPROXY": proxy.url, "GOSUMDB": "off"}
    with pytest.raises(StackError, match="not a valid zip"):
        gotoolchain.ensure_go("go1.99.0", tmp_path / "cache", lambda m: None, env=env)


def test_a_cached_toolchain_missing_a_file_is_fetched_again(tmp_path, proxy):
    env = {"PATH": str(tmp_path / "empty"), "GOPROXY": proxy.url}
    cache = tmp_path / "cache"
    bin_dir = gotoolchain.ensure_go("go1.99.0", cache, lambda m: None, env=env)
    compiler = bin_dir.parent / "pkg/tool/linux_amd64/compile"
    compiler.unlink()  # what a copy cut short leaves: `go version` answers, a build fails
    messages = []
    assert gotoolchain.ensure_go("go1.99.0", cache, messages.append, env=env) == bin_dir
    assert messages[0] == f"the Go toolchain in {bin_dir.parent} is incomplete (a file is missing " \
                          f"or cut short): fetching it again"
    assert len(proxy.zip_requests) == 2 and compiler.exists()
