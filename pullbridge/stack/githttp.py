"""A git smart-HTTP server for the local stack: `git http-backend` behind a tiny HTTP server.

Why: the tests and the demo need git over a real network transport, as a git
host serves it, without nginx or Apache.  git's own CGI program does all the
protocol work; this module only speaks HTTP/1.1 to clients (including chunked
request bodies, which git uses for pushes larger than http.postBuffer) and CGI
to ``git http-backend``.  A request body is always read to its end, even when
git answers early without it, so a keep-alive connection stays in step.

Run: ``python -m pullbridge.stack.githttp ROOT PORT``.  Every bare repository
under ROOT is served at ``http://127.0.0.1:PORT/<path>``, fetch and push.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

GIT = shutil.which("git") or "git"


class GitHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pullbridge-githttp"
    root = "."

    def do_GET(self):  # noqa: N802 (http.server naming)
        self._cgi()

    def do_POST(self):  # noqa: N802
        self._cgi()

    def do_HEAD(self):  # noqa: N802 (git http-backend answers HEAD as GET; no body is sent)
        self._cgi()

    def log_message(self, fmt, *args):
        sys.stderr.write("githttp: %s %s\n" % (self.address_string(), fmt % args))

    def _body_chunks(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                yield from self._read_exactly(size)
                self.rfile.readline(16)
        else:
            yield from self._read_exactly(int(self.headers.get("Content-Length") or 0))

    def _read_exactly(self, size: int):
        while size > 0:
            chunk = self.rfile.read(min(size, 65536))
            if not chunk:
                raise ConnectionError("the client sent less than it announced")
            size -= len(chunk)
            yield chunk

    def _cgi(self):
        url = urlsplit(self.path)
        path = unquote(url.path)  # CGI wants it decoded: "my%20repo.git" is "my repo.git"
        if ".." in path.split("/"):
            # git would refuse it too, as a 500; say what is wrong (send_error closes the connection).
            self.send_error(403, f"{path}: '..' is not allowed in a repository path")
            return
        env = {
            "GIT_PROJECT_ROOT": self.root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": url.query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_USER": "pullbridge",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        if self.headers.get("Content-Length"):
            env["CONTENT_LENGTH"] = self.headers["Content-Length"]
        proc = subprocess.Popen([GIT, "-c", "http.receivepack=true", "http-backend"], env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sys.stderr)

        def feed():
            # The whole body is read even when git stops reading it (an early error answer):
            # unread bytes would be taken for the next request on this keep-alive connection.
            sink = proc.stdin
            try:
                for chunk in self._body_chunks():
                    if sink is not None:
                        try:
                            sink.write(chunk)
                        except (BrokenPipeError, ValueError):
                            sink = None
            except (OSError, ValueError):  # cut short or a malformed chunk: where it ends is unknown
                self.close_connection = True
            finally:
                try:
                    proc.stdin.close()
                except BrokenPipeError:
                    pass

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        status, headers = "200 OK", []
        while True:
            line = proc.stdout.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").rstrip("\r\n").partition(":")
            if name.lower() == "status":
                status = value.strip()
            else:
                headers.append((name, value.strip()))
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason or None)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while True:
            data = proc.stdout.read1(65536)
            if not data:
                break
            if self.command != "HEAD":
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        if self.command != "HEAD":
            self.wfile.write(b"0\r\n\r\n")
        feeder.join()
        proc.wait()


def serve(root: str, port: int, host: str = "127.0.0.1") -> None:
    handler = type("Handler", (GitHandler,), {"root": root})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
