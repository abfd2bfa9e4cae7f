"""A small in-process HTTP server that approximates the Hugging Face Hub API for tests.

This is NOT the Hugging Face Hub. It approximates only the endpoints that the
``huggingface_hub`` 0.36 client calls for the operations this project uses (create a repo,
upload through the preupload / LFS batch / ndjson commit flow, branches, tags, refs, repo info,
tree listing, commit listing, and ``resolve`` downloads), and it mimics the response fields and
the error headers (``X-Error-Code``, ``X-Error-Message``) that the client reads. Their shapes were
taken from the client source (``hf_api.py``, ``_commit_api.py``, ``lfs.py``,
``file_download.py``, ``utils/_http.py``), not from a specification of the Hub. Anything else
(pull requests, Xet storage, multipart LFS, gated repos, spaces, YAML validation) is absent or
stubbed. A test passing against it says the code speaks the client's protocol; it says nothing
about quotas, latency, eventual consistency or other behaviour of the real service.

Storage is in memory and git-like: each repository holds commits (a full snapshot
``path -> bytes`` plus parent, message and a 40-hex sha1 oid), branches (``main`` first) and tags.
As on the Hub, a new repository starts with one commit that adds ``.gitattributes``.

For hostile-server tests it can lie and stall: ``tamper(path_substring, rewrite)`` passes every
matching answer (status, headers, body) through ``rewrite`` (a repo info whose ``sha`` is
``"../x"``, an ``ETag`` with ``../``), and ``stall(path_substring, seconds)`` holds matching
answers until the time is up or :meth:`HubServer.reset` is called.

Usage::

    with HubServer() as hub:
        os.environ["HF_ENDPOINT"] = hub.url  # before huggingface_hub is imported
        ...

Client gotchas (huggingface_hub 0.36): ``HF_ENDPOINT`` is read once, when
``huggingface_hub.constants`` is imported, and ``CommitInfo`` parses the ``commitUrl`` it gets
back against that import-time endpoint, so every commit (``upload_file``, ``upload_folder``,
``create_commit``) fails with ``ValueError`` unless ``HF_ENDPOINT`` pointed here at import time,
even if ``endpoint=`` is passed to ``HfApi``. Set ``HF_HUB_DISABLE_XET=1`` too: with ``hf_xet``
installed the client would otherwise offer the Xet transfer. See ``tests/_hubfixture.py``.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["HubServer", "LoggedRequest", "HubError"]

DEFAULT_NAMESPACE = "test-user"
REPO_TYPES = ("model", "dataset")
URL_PREFIXES = {"model": "", "dataset": "datasets/"}
# The Hub stores files of these kinds (and big or binary files) in LFS; see its default
# .gitattributes below.
LFS_EXTENSIONS = (
    ".7z", ".arrow", ".bin", ".bz2", ".ckpt", ".ftz", ".gz", ".h5", ".joblib", ".mlmodel",
    ".model", ".msgpack", ".npy", ".npz", ".onnx", ".ot", ".parquet", ".pb", ".pickle", ".pkl",
    ".pt", ".pth", ".rar", ".safetensors", ".tar", ".tflite", ".tgz", ".wasm", ".xz", ".zip",
    ".zst",
)  # fmt: skip
DEFAULT_GITATTRIBUTES = "".join(
    f"*{ext} filter=lfs diff=lfs merge=lfs -text\n" for ext in LFS_EXTENSIONS
).encode()
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"
SHA_RE = re.compile(r"^[0-9a-f]{40}$")
LFS_BATCH = ["info", "lfs", "objects", "batch"]


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob with this content (what the Hub calls ``blobId``/``oid``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class StoredFile:
    content: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def pointer(self) -> bytes:
        return lfs_pointer(self.sha256, len(self.content))

    @property
    def blob_id(self) -> str:
        return git_blob_sha1(self.pointer if self.lfs else self.content)

    @property
    def etag(self) -> str:
        """The ETag ``resolve`` answers with: sha256 for LFS files, the git blob id otherwise."""
        return self.sha256 if self.lfs else self.blob_id

    @property
    def preupload_oid(self) -> str:
        """The oid ``preupload`` reports; the client compares it with its local one."""
        return self.sha256 if self.lfs else git_blob_sha1(self.content)


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    description: str
    files: dict[str, StoredFile]
    date: str


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    lfs: dict[str, bytes] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        if revision in self.branches:
            return self.branches[revision]
        if revision in self.tags:
            return self.tags[revision]
        if SHA_RE.match(revision) and revision in self.commits:
            return revision
        return None


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    query: str
    status: int
    authorization: str | None


@dataclass
class _Fault:
    substring: str
    status: int
    remaining: int
    method: str | None


#: Rewrites an answer: (status, headers, body) -> (status, headers, body).
Tamper = Callable[[int, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]


@dataclass
class _Tamper:
    substring: str
    rewrite: Tamper


class HubError(Exception):
    """Raised inside a handler to answer with an error the way the Hub does."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.body = body


class HubServer:
    """A Hub look-alike on ``127.0.0.1`` (a random port), served from a daemon thread."""

    def __init__(self, lfs_threshold: int = 10 * 1024 * 1024) -> None:
        self.lfs_threshold = lfs_threshold
        self._lock = threading.RLock()
        self._repos: dict[tuple[str, str], Repo] = {}
        self._token: str | None = None
        self._faults: list[_Fault] = []
        self._tampers: list[_Tamper] = []
        self._stalls: list[tuple[str, float]] = []
        self._release = threading.Event()
        self._counter = itertools.count()
        self.requests_log: list[LoggedRequest] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> HubServer:
        if self._httpd is not None:
            return self
        handler = type("_BoundHandler", (_Handler,), {"hub": self})
        httpd = _QuietServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("HubServer is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------- test helpers
    def reset(self) -> None:
        """Forget every repo, the token, pending faults and the request log."""
        with self._lock:
            self._repos.clear()
            self._token = None
            self._faults.clear()
            self._tampers.clear()
            self._stalls.clear()
            self.requests_log.clear()
        self._release.set()  # let stalled answers finish
        self._release = threading.Event()

    def set_token(self, token: str | None) -> None:
        """Require ``Authorization: Bearer <token>`` for writes and private reads (None: open)."""
        with self._lock:
            self._token = token

    def fail_next(
        self, path_substring: str, status: int, times: int = 1, method: str | None = None
    ) -> None:
        """Fail the next ``times`` requests whose path contains ``path_substring`` with ``status``.

        ``status=0`` drops the connection without answering. The request body is read first.
        Mind that the client retries LFS PUTs (``http_backoff``) on 500/502/503/504 and on
        connection errors, sleeping 1, 2, 4, 8, 8 s; use e.g. 403 for a fast permanent failure.
        """
        with self._lock:
            self._faults.append(_Fault(path_substring, status, times, method))

    def tamper(self, path_substring: str, rewrite: Tamper) -> None:
        """Answer every request whose path contains ``path_substring`` through ``rewrite``.

        For hostile-server tests: ``rewrite(status, headers, body)`` returns what is sent
        instead (e.g. a repo info whose ``sha`` is ``"../x"``, or an ``ETag`` with ``../``).
        """
        with self._lock:
            self._tampers.append(_Tamper(path_substring, rewrite))

    def stall(self, path_substring: str, seconds: float) -> None:
        """Hold the answers to matching requests for ``seconds`` (or until :meth:`reset`)."""
        with self._lock:
            self._stalls.append((path_substring, seconds))

    def create_repo_direct(
        self, repo_id: str, *, private: bool = False, repo_type: str = "model"
    ) -> str:
        """Create a repo (with the initial ``.gitattributes`` commit); returns its URL."""
        with self._lock:
            self._create_repo(repo_id, repo_type, private)
        return self.repo_url(repo_id, repo_type)

    def commit_files_direct(
        self,
        repo_id: str,
        files: dict[str, bytes | None],
        branch: str = "main",
        message: str = "",
        *,
        repo_type: str = "model",
    ) -> str:
        """Commit ``files`` (``None`` deletes a path) on top of ``branch``; returns the sha.

        The repo is created when missing. LFS is chosen as for uploads through the client.
        """
        with self._lock:
            repo = self._repos.get((repo_type, repo_id)) or self._create_repo(
                repo_id, repo_type, False
            )
            if branch not in repo.branches:
                raise KeyError(f"no branch {branch!r} in {repo_id}")
            snapshot = dict(repo.commits[repo.branches[branch]].files)
            for path, content in files.items():
                if content is None:
                    snapshot.pop(path, None)
                else:
                    lfs = self._wants_lfs(path, len(content), content[:512])
                    if lfs:
                        repo.lfs[hashlib.sha256(content).hexdigest()] = content
                    snapshot[path] = StoredFile(content, lfs)
            return self._add_commit(repo, branch, snapshot, message or "Commit", "")

    def repo_url(self, repo_id: str, repo_type: str = "model") -> str:
        return f"{self.url}/{URL_PREFIXES[repo_type]}{repo_id}"

    def head(self, repo_id: str, branch: str = "main", repo_type: str = "model") -> str:
        with self._lock:
            return self._repos[(repo_type, repo_id)].branches[branch]

    def files_at(self, repo_id: str, revision: str, repo_type: str = "model") -> dict[str, bytes]:
        with self._lock:
            repo = self._repos[(repo_type, repo_id)]
            sha = repo.resolve(revision)
            if sha is None:
                raise KeyError(revision)
            return {p: f.content for p, f in repo.commits[sha].files.items()}

    def lfs_objects(self, repo_id: str, repo_type: str = "model") -> set[str]:
        with self._lock:
            return set(self._repos[(repo_type, repo_id)].lfs)

    def has_repo(self, repo_id: str, repo_type: str = "model") -> bool:
        with self._lock:
            return (repo_type, repo_id) in self._repos

    # ----------------------------------------------------------------- internals
    def _wants_lfs(self, path: str, size: int, sample: bytes) -> bool:
        return size >= self.lfs_threshold or path.endswith(LFS_EXTENSIONS) or b"\0" in sample

    def _create_repo(self, repo_id: str, repo_type: str, private: bool) -> Repo:
        if repo_type not in REPO_TYPES:
            raise HubError(400, f"Unsupported repo type {repo_type!r} (this test server)")
        if (repo_type, repo_id) in self._repos:
            raise HubError(
                409,
                f"You already created this {repo_type} repo",
                body={"url": self.repo_url(repo_id, repo_type)},
            )
        repo = Repo(repo_id, repo_type, private, _now())
        self._repos[(repo_type, repo_id)] = repo
        first = {".gitattributes": StoredFile(DEFAULT_GITATTRIBUTES, False)}
        self._add_commit(repo, None, first, "initial commit", "")
        return repo

    def _add_commit(
        self,
        repo: Repo,
        branch: str | None,
        files: dict[str, StoredFile],
        title: str,
        description: str,
    ) -> str:
        parent = repo.branches.get(branch) if branch is not None else None
        seed = json.dumps(
            [repo.repo_type, repo.repo_id, parent, title, next(self._counter)]
            + sorted((p, f.blob_id) for p, f in files.items())
        )
        oid = hashlib.sha1(seed.encode()).hexdigest()
        repo.commits[oid] = Commit(oid, parent, title, description, files, _now())
        repo.branches[branch or "main"] = oid
        return oid

    def _take_fault(self, method: str, path: str) -> int | None:
        with self._lock:
            for fault in self._faults:
                if fault.substring in path and fault.method in (None, method):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault.status
        return None


class _QuietServer(ThreadingHTTPServer):
    """Says nothing when a client hangs up first (a stalled answer after a client timeout)."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _json_body(handler: _Handler) -> dict[str, Any]:
    if not handler.body:
        return {}
    try:
        data = json.loads(handler.body)
    except ValueError as e:
        raise HubError(400, f"Invalid JSON body: {e}") from e
    if not isinstance(data, dict):
        raise HubError(400, "Expected a JSON object")
    return data


def _truthy(values: list[str] | None) -> bool:
    return bool(values) and values[0].lower() in ("1", "true", "yes")  # type: ignore[index]


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/0.1"

    body: bytes = b""
    _status: int = 0
    _tamper: list[Tamper] = []  # noqa: RUF012 - set per request in _dispatch

    # ------------------------------------------------------------------ plumbing
    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle + delayed ACK
        # add ~40 ms to every request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        self.query = parse_qs(split.query, keep_blank_values=True)
        self._status = 0
        self._tamper = []
        try:
            self.body = self._read_body()
            fault = self.hub._take_fault(method, split.path)
            if fault == 0:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault is not None:
                raise HubError(fault, f"Injected failure ({fault}) for {split.path}")
            with self.hub._lock:
                stall = max((t for p, t in self.hub._stalls if p in split.path), default=0.0)
                self._tamper = [t.rewrite for t in self.hub._tampers if t.substring in split.path]
                release = self.hub._release
            if stall:
                release.wait(stall)
            self._route(method, split.path)
        except HubError as e:
            self._send_error(e)
        except Exception as e:  # pragma: no cover - a bug in this server
            self._send_error(HubError(500, f"Fake hub internal error: {e!r}"))
        finally:
            with self.hub._lock:
                self.hub.requests_log.append(
                    LoggedRequest(
                        method,
                        split.path,
                        split.query,
                        self._status,
                        self.headers.get("Authorization"),
                    )
                )

    def _send(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        method: str | None = None,
    ) -> None:
        all_headers = {"Content-Type": content_type, **(headers or {})}
        for rewrite in self._tamper:
            status, all_headers, body = rewrite(status, all_headers, body)
        self._status = status
        self.send_response(status)
        for k, v in all_headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if method != "HEAD" and self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(
        self, data: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        self._send(status, json.dumps(data).encode(), headers=headers)

    def _send_error(self, e: HubError) -> None:
        headers = dict(e.headers)
        if e.code:
            headers["X-Error-Code"] = e.code
        headers.setdefault("X-Error-Message", e.message)
        body = {"error": e.message, **(e.body or {})}
        self._send_json(body, e.status, headers)

    # ------------------------------------------------------------------ auth
    def _auth_state(self) -> str:
        """``open`` (no token configured), ``ok``, ``missing`` or ``bad``."""
        token = self.hub._token
        if token is None:
            return "open"
        header = self.headers.get("Authorization")
        if header is None:
            return "missing"
        return "ok" if header == f"Bearer {token}" else "bad"

    def _check_write(self) -> None:
        state = self._auth_state()
        if state == "bad":
            raise HubError(401, INVALID_CREDENTIALS)
        if state == "missing":
            raise HubError(
                401, "Invalid username or password.", headers={"X-Error-Message": "Unauthorized"}
            )

    def _get_repo(self, repo_type: str, repo_id: str, *, write: bool = False) -> Repo:
        state = self._auth_state()
        if state == "bad":
            raise HubError(401, INVALID_CREDENTIALS)
        if write:
            self._check_write()
        repo = self.hub._repos.get((repo_type, repo_id))
        if repo is None or (repo.private and state == "missing"):
            # Like the Hub: 401 when anonymous (it does not reveal private repos), else 404.
            status = 404 if state == "ok" else 401
            raise HubError(status, "Repository not found", code="RepoNotFound")
        return repo

    @staticmethod
    def _resolve(repo: Repo, revision: str) -> str:
        sha = repo.resolve(revision)
        if sha is None:
            raise HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        return sha

    # ------------------------------------------------------------------ routing
    def _route(self, method: str, path: str) -> None:
        parts = path.strip("/").split("/")
        hub = self.hub
        with hub._lock:
            if parts[0] == "api":
                self._route_api(method, [unquote(p) for p in parts[1:]])
                return
            if parts[0] == "lfs-upload" and len(parts) == 5 and method == "PUT":
                self._lfs_put(parts[1], f"{parts[2]}/{parts[3]}", parts[4])
                return
            if parts[0] == "lfs-verify" and len(parts) == 4 and method == "POST":
                self._lfs_verify(parts[1], f"{parts[2]}/{parts[3]}")
                return
            repo_type = "model"
            if parts[0] in ("datasets", "spaces"):
                repo_type = parts[0][:-1]
                parts = parts[1:]
            if len(parts) == 6 and parts[1].endswith(".git") and parts[2:] == LFS_BATCH:
                if method != "POST":
                    raise HubError(405, "Method not allowed")
                self._lfs_batch(repo_type, f"{parts[0]}/{parts[1][:-4]}")
                return
            if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
                repo_id = f"{parts[0]}/{parts[1]}"
                revision = unquote(parts[3])
                filename = unquote("/".join(parts[4:]))
                self._resolve_file(method, repo_type, repo_id, revision, filename)
                return
        raise HubError(404, f"Not found: {method} {path} (not emulated by this test server)")

    def _route_api(self, method: str, parts: list[str]) -> None:
        if parts == ["repos", "create"] and method == "POST":
            return self._create_repo()
        if parts == ["repos", "delete"] and method == "DELETE":
            return self._delete_repo()
        if parts == ["validate-yaml"] and method == "POST":
            return self._send_json({"errors": [], "warnings": []})
        if parts == ["whoami-v2"] and method == "GET":
            if self._auth_state() in ("missing", "bad"):
                raise HubError(401, INVALID_CREDENTIALS)
            return self._send_json({"type": "user", "name": DEFAULT_NAMESPACE, "orgs": []})
        if len(parts) < 3 or parts[0] not in ("models", "datasets"):
            raise HubError(404, f"Not found: /api/{'/'.join(parts)}")
        repo_type = parts[0][:-1]
        repo_id = f"{parts[1]}/{parts[2]}"
        rest = parts[3:]
        action = rest[0] if rest else ""
        if method == "GET" and not rest:
            return self._info(repo_type, repo_id, "main")
        if method == "GET" and action == "revision" and len(rest) == 2:
            return self._info(repo_type, repo_id, rest[1])
        if method == "POST" and action == "preupload" and len(rest) == 2:
            return self._preupload(repo_type, repo_id, rest[1])
        if method == "POST" and action == "commit" and len(rest) == 2:
            return self._commit(repo_type, repo_id, rest[1])
        if method == "GET" and action == "tree" and len(rest) >= 2:
            return self._tree(repo_type, repo_id, rest[1], "/".join(rest[2:]))
        if method == "POST" and action == "paths-info" and len(rest) == 2:
            return self._paths_info(repo_type, repo_id, rest[1])
        if method == "GET" and action == "refs" and len(rest) == 1:
            return self._refs(repo_type, repo_id)
        if method == "GET" and action == "commits" and len(rest) == 2:
            return self._commits(repo_type, repo_id, rest[1])
        if action == "branch" and len(rest) == 2 and method in ("POST", "DELETE"):
            return self._branch(method, repo_type, repo_id, rest[1])
        if action == "tag" and len(rest) == 2 and method in ("POST", "DELETE"):
            return self._tag(method, repo_type, repo_id, rest[1])
        raise HubError(404, f"Not found: {method} /api/{'/'.join(parts)} (not emulated)")

    # ------------------------------------------------------------------ repos
    def _create_repo(self) -> None:
        self._check_write()
        data = _json_body(self)
        name = data.get("name")
        if not isinstance(name, str) or not name or "/" in name:
            raise HubError(400, "Invalid repo name")
        repo_id = f"{data.get('organization') or DEFAULT_NAMESPACE}/{name}"
        repo_type = data.get("type") or "model"
        repo = self.hub._create_repo(repo_id, repo_type, bool(data.get("private", False)))
        url = self.hub.repo_url(repo.repo_id, repo_type)
        self._send_json({"url": url, "name": repo_id, "id": repo_id})

    def _delete_repo(self) -> None:
        self._check_write()
        data = _json_body(self)
        repo_id = f"{data.get('organization') or DEFAULT_NAMESPACE}/{data.get('name')}"
        repo_type = data.get("type") or "model"
        self._get_repo(repo_type, repo_id, write=True)
        del self.hub._repos[(repo_type, repo_id)]
        self._send_json({})

    def _file_entry(self, path: str, f: StoredFile, expand: bool, commit: Commit) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "type": "file",
            "oid": f.blob_id,
            "size": len(f.content),
            "path": path,
        }
        if f.lfs:
            entry["lfs"] = {"oid": f.sha256, "size": len(f.content), "pointerSize": len(f.pointer)}
        if expand:
            entry["lastCommit"] = {"id": commit.oid, "title": commit.title, "date": commit.date}
        return entry

    def _info(self, repo_type: str, repo_id: str, revision: str) -> None:
        repo = self._get_repo(repo_type, repo_id)
        sha = self._resolve(repo, revision)
        commit = repo.commits[sha]
        blobs = _truthy(self.query.get("blobs"))
        siblings = []
        for path in sorted(commit.files):
            f = commit.files[path]
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:  # like the Hub, sizes and LFS info only with ?blobs=true
                sibling["size"] = len(f.content)
                sibling["blobId"] = f.blob_id
                if f.lfs:
                    sibling["lfs"] = {
                        "sha256": f.sha256,
                        "size": len(f.content),
                        "pointerSize": len(f.pointer),
                    }
            siblings.append(sibling)
        self._send_json(
            {
                "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
                "id": repo_id,
                "author": repo_id.split("/")[0],
                "sha": sha,
                "lastModified": commit.date,
                "createdAt": repo.created_at,
                "private": repo.private,
                "disabled": False,
                "gated": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": siblings,
            }
        )

    # ------------------------------------------------------------------ upload
    def _branch_head(self, repo: Repo, revision: str) -> str:
        if revision not in repo.branches:
            raise HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        return repo.branches[revision]

    def _preupload(self, repo_type: str, repo_id: str, revision: str) -> None:
        repo = self._get_repo(repo_type, repo_id, write=True)
        if _truthy(self.query.get("create_pr")):
            raise HubError(400, "Pull requests are not emulated by this test server")
        files = repo.commits[self._branch_head(repo, revision)].files
        out = []
        for item in _json_body(self).get("files", []):
            path, size = item["path"], int(item["size"])
            sample = base64.b64decode(item.get("sample", ""))
            entry: dict[str, Any] = {
                "path": path,
                "uploadMode": "lfs" if self.hub._wants_lfs(path, size, sample) else "regular",
                "shouldIgnore": False,
            }
            if path in files:
                entry["oid"] = files[path].preupload_oid
            out.append(entry)
        self._send_json({"files": out, "commitOid": repo.branches[revision]})

    def _lfs_batch(self, repo_type: str, repo_id: str) -> None:
        repo = self._get_repo(repo_type, repo_id, write=True)
        data = _json_body(self)
        if data.get("operation") != "upload":
            raise HubError(400, "Only the upload operation is emulated")
        transfers = data.get("transfers") or ["basic"]
        if "basic" not in transfers:
            raise HubError(400, f"None of the transfers {transfers} is supported (basic only)")
        prefix = f"{self.hub.url}"
        objects = []
        for obj in data.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            out: dict[str, Any] = {"oid": oid, "size": size}
            if oid not in repo.lfs:
                tail = f"{repo_type}/{repo_id}"
                out["authenticated"] = True
                out["actions"] = {
                    "upload": {"href": f"{prefix}/lfs-upload/{tail}/{oid}", "expires_in": 3600},
                    "verify": {"href": f"{prefix}/lfs-verify/{tail}", "header": {}},
                }
            objects.append(out)
        self._send(
            200,
            json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode(),
            content_type="application/vnd.git-lfs+json",
        )

    def _lfs_put(self, repo_type: str, repo_id: str, oid: str) -> None:
        repo = self.hub._repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, "Repository not found")
        if hashlib.sha256(self.body).hexdigest() != oid:
            raise HubError(400, f"sha256 of the uploaded content does not match oid {oid}")
        repo.lfs[oid] = self.body
        self._send(200, b"", content_type="text/plain")

    def _lfs_verify(self, repo_type: str, repo_id: str) -> None:
        repo = self.hub._repos.get((repo_type, repo_id))
        data = _json_body(self)
        oid = data.get("oid")
        if repo is None or oid not in repo.lfs:
            raise HubError(404, f"LFS object {oid} not found")
        if int(data.get("size", -1)) != len(repo.lfs[oid]):
            raise HubError(400, f"LFS object {oid} has a different size")
        self._send_json({})

    def _commit(self, repo_type: str, repo_id: str, revision: str) -> None:
        repo = self._get_repo(repo_type, repo_id, write=True)
        if _truthy(self.query.get("create_pr")):
            raise HubError(400, "Pull requests are not emulated by this test server")
        head = self._branch_head(repo, revision)
        lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The first line of the commit payload must be the header")
        header = lines[0]["value"]
        parent_commit = header.get("parentCommit")
        if parent_commit is not None and parent_commit != head:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        snapshot = dict(repo.commits[head].files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            path = value.get("path", "")
            if key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise HubError(400, "Only base64 encoding is emulated")
                snapshot[path] = StoredFile(base64.b64decode(value["content"]), False)
            elif key == "lfsFile":
                oid = value.get("oid")
                if oid not in repo.lfs:
                    raise HubError(
                        400,
                        f"Your push was rejected because an LFS pointer pointed to a file that "
                        f"does not exist ({path}, {oid})",
                    )
                snapshot[path] = StoredFile(repo.lfs[oid], True)
            elif key == "deletedFile":
                if path not in snapshot:
                    raise HubError(
                        404, f"A file with this name doesn't exist: {path}", code="EntryNotFound"
                    )
                del snapshot[path]
            elif key == "deletedFolder":
                folder = path.rstrip("/") + "/"
                doomed = [p for p in snapshot if p.startswith(folder)]
                if not doomed:
                    raise HubError(
                        404, f"A folder with this name doesn't exist: {path}", code="EntryNotFound"
                    )
                for p in doomed:
                    del snapshot[p]
            else:
                raise HubError(400, f"Unknown commit operation {key!r}")
        oid = self.hub._add_commit(
            repo, revision, snapshot, header.get("summary") or "", header.get("description") or ""
        )
        prefix = URL_PREFIXES[repo_type]
        self._send_json(
            {
                "success": True,
                "commitOid": oid,
                "commitUrl": f"{self.hub.url}/{prefix}{repo_id}/commit/{oid}",
                "hookOutput": "",
            }
        )

    # ------------------------------------------------------------------ listing
    def _entries(
        self, commit: Commit, base: str, recursive: bool, expand: bool
    ) -> Iterator[dict[str, Any]]:
        base = base.strip("/")
        prefix = f"{base}/" if base else ""
        dirs: set[str] = set()
        files: list[str] = []
        for path in commit.files:
            if not path.startswith(prefix):
                continue
            rel = path[len(prefix) :].split("/")
            parents = range(1, len(rel)) if recursive else range(1, min(2, len(rel)))
            for i in parents:
                dirs.add(prefix + "/".join(rel[:i]))
            if recursive or len(rel) == 1:
                files.append(path)
        for d in sorted(dirs):
            entry: dict[str, Any] = {
                "type": "directory",
                "oid": hashlib.sha1(f"tree {commit.oid} {d}".encode()).hexdigest(),
                "size": 0,
                "path": d,
            }
            if expand:
                entry["lastCommit"] = {"id": commit.oid, "title": commit.title, "date": commit.date}
            yield entry
        for path in sorted(files):
            yield self._file_entry(path, commit.files[path], expand, commit)

    def _tree(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        repo = self._get_repo(repo_type, repo_id)
        commit = repo.commits[self._resolve(repo, revision)]
        path = path.strip("/")
        if path and not any(p.startswith(path + "/") for p in commit.files):
            raise HubError(
                404,
                f"Entry not found: {path}",
                code="EntryNotFound",
                headers={"X-Repo-Commit": commit.oid},
            )
        recursive = _truthy(self.query.get("recursive"))
        expand = _truthy(self.query.get("expand"))
        self._send_json(list(self._entries(commit, path, recursive, expand)))

    def _paths_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        repo = self._get_repo(repo_type, repo_id)
        commit = repo.commits[self._resolve(repo, revision)]
        form = parse_qs(self.body.decode(), keep_blank_values=True)
        if self.headers.get("Content-Type", "").startswith("application/json"):
            data = _json_body(self)
            form = {"paths": data.get("paths", []), "expand": [str(data.get("expand", ""))]}
        expand = _truthy(form.get("expand"))
        out = []
        for path in form.get("paths", []):
            path = path.strip("/")
            if path in commit.files:
                out.append(self._file_entry(path, commit.files[path], expand, commit))
            elif any(p.startswith(path + "/") for p in commit.files):
                out.append(
                    {
                        "type": "directory",
                        "oid": hashlib.sha1(f"tree {commit.oid} {path}".encode()).hexdigest(),
                        "size": 0,
                        "path": path,
                    }
                )
        self._send_json(out)

    def _refs(self, repo_type: str, repo_id: str) -> None:
        repo = self._get_repo(repo_type, repo_id)

        def ref(kind: str, name: str, sha: str) -> dict[str, str]:
            return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": sha}

        self._send_json(
            {
                "branches": [ref("heads", n, s) for n, s in repo.branches.items()],
                "converts": [],
                "tags": [ref("tags", n, s) for n, s in repo.tags.items()],
                "pullRequests": [],
            }
        )

    def _commits(self, repo_type: str, repo_id: str, revision: str) -> None:
        repo = self._get_repo(repo_type, repo_id)
        sha: str | None = self._resolve(repo, revision)
        out = []
        while sha is not None:
            c = repo.commits[sha]
            message = c.title + (f"\n\n{c.description}" if c.description else "")
            out.append(
                {
                    "id": c.oid,
                    "title": c.title,
                    "message": message,
                    "authors": [{"user": DEFAULT_NAMESPACE, "avatar": None}],
                    "date": c.date,
                }
            )
            sha = c.parent
        self._send_json(out)

    # ------------------------------------------------------------------ refs
    def _branch(self, method: str, repo_type: str, repo_id: str, branch: str) -> None:
        repo = self._get_repo(repo_type, repo_id, write=True)
        if method == "DELETE":
            if branch not in repo.branches:
                raise HubError(404, f"Invalid rev id: {branch}", code="RevisionNotFound")
            if branch == "main":
                raise HubError(403, "Cannot delete the default branch")
            del repo.branches[branch]
            return self._send_json({})
        if branch in repo.branches:
            raise HubError(409, f"Reference already exists: refs/heads/{branch}")
        start = _json_body(self).get("startingPoint") or "main"
        repo.branches[branch] = self._resolve(repo, start)
        self._send_json({})

    def _tag(self, method: str, repo_type: str, repo_id: str, name: str) -> None:
        repo = self._get_repo(repo_type, repo_id, write=True)
        if method == "DELETE":
            if name not in repo.tags:
                raise HubError(404, f"Invalid rev id: {name}", code="RevisionNotFound")
            del repo.tags[name]
            return self._send_json({})
        # POST /tag/{revision} with {"tag": ..., "message": ...}
        sha = self._resolve(repo, name)
        tag = _json_body(self).get("tag")
        if not isinstance(tag, str) or not tag:
            raise HubError(400, "Missing tag name")
        if tag in repo.tags:
            raise HubError(409, f"Tag already exists: refs/tags/{tag}")
        repo.tags[tag] = sha
        self._send_json({})

    # ------------------------------------------------------------------ download
    def _resolve_file(
        self, method: str, repo_type: str, repo_id: str, revision: str, filename: str
    ) -> None:
        repo = self._get_repo(repo_type, repo_id)
        sha = self._resolve(repo, revision)
        f = repo.commits[sha].files.get(filename)
        if f is None:
            raise HubError(
                404,
                f"Entry not found: {filename}",
                code="EntryNotFound",
                headers={"X-Repo-Commit": sha},
            )
        size = len(f.content)
        headers = {
            "X-Repo-Commit": sha,
            "ETag": f'"{f.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Disposition": f'inline; filename="{filename.rsplit("/", 1)[-1]}"',
        }
        if f.lfs:
            headers["X-Linked-Etag"] = f'"{f.sha256}"'
            headers["X-Linked-Size"] = str(size)
        status, body = 200, f.content
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
        if match and (match.group(1) or match.group(2)):
            if match.group(1):
                start = int(match.group(1))
                end = int(match.group(2)) if match.group(2) else size - 1
            else:  # suffix range: the last N bytes
                start, end = max(0, size - int(match.group(2))), size - 1
            end = min(end, size - 1)
            if start >= size or start > end:
                raise HubError(416, "Requested range not satisfiable", headers=headers)
            status, body = 206, f.content[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        self._send(status, body, "application/octet-stream", headers, method)
