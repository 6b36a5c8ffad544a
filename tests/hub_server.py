"""A loopback Hugging Face Hub for tests: the HTTP routes the real `huggingface_hub` client uses, in memory.

No installable server accepts uploads, so this one implements just enough of the Hub protocol for
`HfApi.create_repo` / `upload_folder` / `create_commit` (preupload, LFS batch + PUT, NDJSON commit, validate-yaml),
`whoami`, `repo_info` / `list_repo_tree` / `paths-info`, and `hf_hub_download` / `snapshot_download` /
`from_pretrained` (resolve with the X-Repo-Commit / ETag / X-Linked-* headers). Standard library only.

The client must run with HF_ENDPOINT=server.url, HF_TOKEN=server.token, HF_HUB_DISABLE_XET=1 and HF_HUB_OFFLINE=0,
set before `huggingface_hub` is imported (it reads them at import time): run it in a subprocess.

    with LoopbackHub() as hub:
        subprocess.run([...], env={**os.environ, **hub.client_env()})
        hub.files("user/repo")  # what was committed
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

_REPO_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_API_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
# Files the server asks the client to send through LFS (as the Hub's .gitattributes does).
_LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".npz", ".png", ".jpg")
_LFS_MIN_SIZE = 10 * 1024 * 1024


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class _File:
    data: bytes
    lfs_sha256: str | None = None  # set when the file went through LFS

    @property
    def etag(self) -> str:
        return self.lfs_sha256 or git_blob_sha1(self.data)

    def tree_entry(self, path: str) -> dict:
        entry = {"type": "file", "path": path, "size": len(self.data), "oid": git_blob_sha1(self.data)}
        if self.lfs_sha256 is not None:
            entry["lfs"] = {"oid": self.lfs_sha256, "size": len(self.data), "pointerSize": 134}
        return entry


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    # commits[i] = (oid, message, {path: _File}); commits[-1] is the head of main.
    commits: list[tuple[str, str, dict[str, _File]]] = field(default_factory=list)

    def snapshot(self, revision: str) -> tuple[str, dict[str, _File]] | None:
        if revision in ("main", "HEAD"):
            oid, _, files = self.commits[-1]
            return oid, files
        for oid, _, files in self.commits:
            if oid == revision:
                return oid, files
        return None


class _HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class LoopbackHub:
    """The in-memory Hub and its threaded HTTP server on 127.0.0.1 (an ephemeral port)."""

    def __init__(self, *, token: str = "hf_loopback_test_token", user: str = "tester") -> None:
        self.token, self.user = token, user
        self.repos: dict[tuple[str, str], _Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self.unhandled: list[tuple[str, str]] = []  # requests no route matched (a protocol gap to fix)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> LoopbackHub:
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="loopback-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LoopbackHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("LoopbackHub is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def client_env(self) -> dict[str, str]:
        """Environment for a client process talking to this server."""
        return {
            "HF_ENDPOINT": self.url,
            "HF_TOKEN": self.token,
            "HF_HUB_OFFLINE": "0",
            "TRANSFORMERS_OFFLINE": "0",
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_ETAG_TIMEOUT": "30",
            "HF_HUB_DOWNLOAD_TIMEOUT": "30",
        }

    # -- inspection (tests) ----------------------------------------------------------------------------------
    def files(self, repo_id: str, repo_type: str = "model") -> dict[str, bytes]:
        repo = self.repos[(repo_type, repo_id)]
        return {path: f.data for path, f in repo.commits[-1][2].items()}

    def lfs_paths(self, repo_id: str, repo_type: str = "model") -> set[str]:
        repo = self.repos[(repo_type, repo_id)]
        return {path for path, f in repo.commits[-1][2].items() if f.lfs_sha256 is not None}

    # -- store operations (called by the handler) ------------------------------------------------------------
    def _repo(self, repo_type: str, repo_id: str, authorized: bool) -> _Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not authorized):
            # The Hub answers the same for a missing and an unreadable private repo.
            raise _HubError(
                HTTPStatus.NOT_FOUND if repo is None else 401, f"Repository {repo_id} not found", "RepoNotFound"
            )
        return repo

    def _snapshot(self, repo: _Repo, revision: str) -> tuple[str, dict[str, _File]]:
        found = repo.snapshot(unquote(revision))
        if found is None:
            raise _HubError(HTTPStatus.NOT_FOUND, f"Invalid rev id: {revision}", "RevisionNotFound")
        return found

    def _create(self, payload: dict) -> tuple[int, dict]:
        name, organization = payload.get("name"), payload.get("organization")
        repo_type = payload.get("type") or "model"
        if not isinstance(name, str) or not re.fullmatch(r"[\w.-]+", name or ""):
            raise _HubError(HTTPStatus.BAD_REQUEST, f"invalid repo name {name!r}")
        if repo_type not in _REPO_PREFIX:
            raise _HubError(HTTPStatus.BAD_REQUEST, f"invalid repo type {repo_type!r}")
        namespace = organization or self.user
        if namespace != self.user:
            raise _HubError(HTTPStatus.FORBIDDEN, f"You don't have the rights to create a repo under {namespace}")
        repo_id = f"{namespace}/{name}"
        url = f"{self.url}/{_REPO_PREFIX[repo_type]}{repo_id}"
        with self._lock:
            if (repo_type, repo_id) in self.repos:
                return HTTPStatus.CONFLICT, {"error": "You already created this repo", "url": url}
            now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            repo = _Repo(
                repo_type, repo_id, payload.get("visibility") == "private" or bool(payload.get("private")), now
            )
            gitattributes = _File(b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
            repo.commits.append(
                (self._commit_oid("initial commit", repo_id, ""), "initial commit", {".gitattributes": gitattributes})
            )
            self.repos[(repo_type, repo_id)] = repo
        return HTTPStatus.OK, {"url": url, "name": repo_id, "id": repo_id}

    @staticmethod
    def _commit_oid(message: str, repo_id: str, parent: str, files: dict[str, _File] | None = None) -> str:
        digest = hashlib.sha1(f"{repo_id}\0{parent}\0{message}".encode())
        for path in sorted(files or {}):
            digest.update(f"{path}\0{files[path].etag}\0".encode())
        return digest.hexdigest()

    def _commit(self, repo: _Repo, revision: str, body: bytes) -> dict:
        try:
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise _HubError(HTTPStatus.BAD_REQUEST, f"commit payload is not NDJSON: {err}") from err
        if not lines or lines[0].get("key") != "header":
            raise _HubError(HTTPStatus.BAD_REQUEST, "commit payload must start with a header line")
        header = lines[0]["value"]
        with self._lock:
            parent_oid, parent_files = self._snapshot(repo, revision)
            if header.get("parentCommit") not in (None, parent_oid):
                raise _HubError(
                    HTTPStatus.PRECONDITION_FAILED, "A commit has happened since. Please refresh and try again."
                )
            files = dict(parent_files)
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value", {})
                path = value.get("path", "")
                if not path or path.startswith("/") or ".." in path.split("/"):
                    raise _HubError(HTTPStatus.BAD_REQUEST, f"invalid path {path!r}")
                if key == "file":
                    if value.get("encoding") != "base64":
                        raise _HubError(HTTPStatus.BAD_REQUEST, f"{path}: only base64 file content is supported")
                    files[path] = _File(base64.b64decode(value["content"]))
                elif key == "lfsFile":
                    oid = value.get("oid")
                    if oid not in self.lfs_objects:
                        raise _HubError(
                            HTTPStatus.UNPROCESSABLE_ENTITY, f"{path}: LFS object {oid} was never uploaded"
                        )
                    if len(self.lfs_objects[oid]) != value.get("size"):
                        raise _HubError(HTTPStatus.UNPROCESSABLE_ENTITY, f"{path}: LFS size mismatch")
                    files[path] = _File(self.lfs_objects[oid], lfs_sha256=oid)
                elif key == "deletedFile":
                    if files.pop(path, None) is None:
                        raise _HubError(
                            HTTPStatus.NOT_FOUND, f"A file with this name doesn't exist: {path}", "EntryNotFound"
                        )
                elif key == "deletedFolder":
                    prefix = path.rstrip("/") + "/"
                    files = {p: f for p, f in files.items() if not p.startswith(prefix)}
                else:
                    raise _HubError(HTTPStatus.BAD_REQUEST, f"unsupported commit operation {key!r}")
            message = header.get("summary") or ""
            oid = self._commit_oid(message, repo.repo_id, parent_oid, files)
            repo.commits.append((oid, message, files))
        prefix = _REPO_PREFIX[repo.repo_type]
        return {"commitUrl": f"{self.url}/{prefix}{repo.repo_id}/commit/{oid}", "commitOid": oid, "success": True}

    def _info(self, repo: _Repo, revision: str) -> dict:
        oid, files = self._snapshot(repo, revision)
        return {
            "id": repo.repo_id,
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": oid,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "tags": [],
            "downloads": 0,
            "likes": 0,
            "createdAt": repo.created_at,
            "lastModified": repo.created_at,
            "siblings": [{"rfilename": p} for p in sorted(files)],
        }

    @staticmethod
    def _validate_yaml(content: str) -> list[str]:
        match = re.match(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", content, flags=re.S)
        if match is None:
            return []
        try:
            metadata = yaml.safe_load(match.group(1)) or {}
        except yaml.YAMLError as err:
            return [f"YAML front matter does not parse: {err}"]
        if not isinstance(metadata, dict):
            return ["YAML front matter must be a mapping"]
        errors = []
        for index in metadata.get("model-index") or []:
            if not isinstance(index, dict) or not isinstance(index.get("name"), str):
                errors.append('"model-index[].name" must be a string')
                continue
            for result in index.get("results") or []:
                task, dataset = result.get("task") or {}, result.get("dataset") or {}
                if not isinstance(task.get("type"), str):
                    errors.append('"model-index[].results[].task.type" is required')
                if not (isinstance(dataset.get("name"), str) and isinstance(dataset.get("type"), str)):
                    errors.append('"model-index[].results[].dataset" needs a name and a type')
                for metric in result.get("metrics") or []:
                    if not isinstance(metric.get("type"), str) or not isinstance(metric.get("value"), (int, float)):
                        errors.append('"model-index[].results[].metrics[]" needs a string type and a numeric value')
        return errors


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_hub: LoopbackHub  # set by LoopbackHub.start

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    # -- plumbing --------------------------------------------------------------------------------------------
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, *, head: bool = False):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _json(self, status: int, payload, headers: dict[str, str] | None = None, *, head: bool = False):
        self._send(
            status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})}, head=head
        )

    def _authorized(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {self.server_hub.token}"

    def _require_auth(self) -> None:
        if not self._authorized():
            raise _HubError(HTTPStatus.UNAUTHORIZED, "Invalid credentials in Authorization header")

    def _dispatch(self, method: str) -> None:
        hub = self.server_hub
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query)
        hub.requests.append((method, path))
        body = self._body() if method in ("POST", "PUT") else b""
        try:
            for pattern, handler_name, methods in _ROUTES:
                match = pattern.fullmatch(path)
                if match and method in methods:
                    getattr(self, handler_name)(method, match, query, body)
                    return
            hub.unhandled.append((method, path))
            raise _HubError(HTTPStatus.NOT_FOUND, f"no route for {method} {path}")
        except _HubError as err:
            headers = {"X-Error-Message": err.message}
            if err.code:
                headers["X-Error-Code"] = err.code
            self._json(err.status, {"error": err.message}, headers, head=method == "HEAD")

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    # -- routes ----------------------------------------------------------------------------------------------
    def whoami(self, method, match, query, body):
        self._require_auth()
        hub = self.server_hub
        self._json(200, {
            "type": "user", "id": "0" * 24, "name": hub.user, "fullname": hub.user, "orgs": [],
            "auth": {"type": "access_token", "accessToken": {"displayName": "loopback", "role": "write"}},
        })  # fmt: skip

    def create_repo(self, method, match, query, body):
        self._require_auth()
        status, payload = self.server_hub._create(json.loads(body or b"{}"))
        self._json(status, payload)

    def validate_yaml(self, method, match, query, body):
        content = json.loads(body or b"{}").get("content", "")
        errors = self.server_hub._validate_yaml(content)
        self._json(400 if errors else 200, {"errors": [{"message": e} for e in errors], "warnings": []})

    def _repo_from(self, match, *, write: bool = False) -> _Repo:
        if write:
            self._require_auth()
        repo_type = _API_TYPES[match.group("kind")]
        return self.server_hub._repo(repo_type, unquote(match.group("repo")), self._authorized())

    def repo_info(self, method, match, query, body):
        repo = self._repo_from(match)
        self._json(200, self.server_hub._info(repo, match.group("rev") or "main"))

    def tree(self, method, match, query, body):
        repo = self._repo_from(match)
        _, files = self.server_hub._snapshot(repo, match.group("rev"))
        prefix = unquote(match.group("path") or "").strip("/")
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        entries, folders = [], set()
        for path in sorted(files):
            if prefix and not path.startswith(prefix + "/"):
                continue
            rest = path[len(prefix) + 1 :] if prefix else path
            if "/" in rest and not recursive:
                folder = f"{prefix}/{rest.split('/')[0]}" if prefix else rest.split("/")[0]
                if folder not in folders:
                    folders.add(folder)
                    entries.append(
                        {
                            "type": "directory",
                            "path": folder,
                            "oid": hashlib.sha1(folder.encode()).hexdigest(),
                            "size": 0,
                        }
                    )
                continue
            if recursive:
                parts = rest.split("/")[:-1]
                for depth in range(1, len(parts) + 1):
                    folder = "/".join(([prefix] if prefix else []) + parts[:depth])
                    if folder not in folders:
                        folders.add(folder)
                        entries.append(
                            {
                                "type": "directory",
                                "path": folder,
                                "oid": hashlib.sha1(folder.encode()).hexdigest(),
                                "size": 0,
                            }
                        )
            entries.append(files[path].tree_entry(path))
        if prefix and not entries and prefix not in files:
            raise _HubError(HTTPStatus.NOT_FOUND, f"{prefix} does not exist", "EntryNotFound")
        self._json(200, entries)

    def paths_info(self, method, match, query, body):
        repo = self._repo_from(match)
        _, files = self.server_hub._snapshot(repo, match.group("rev"))
        content_type = self.headers.get("Content-Type", "")
        if "json" in content_type:
            paths = json.loads(body or b"{}").get("paths", [])
        else:
            paths = parse_qs(body.decode()).get("paths", [])
        paths = [paths] if isinstance(paths, str) else paths
        entries = []
        for p in paths:
            if p in files:
                entries.append(files[p].tree_entry(p))
            elif any(f.startswith(p.rstrip("/") + "/") for f in files):
                entries.append(
                    {"type": "directory", "path": p, "oid": hashlib.sha1(p.encode()).hexdigest(), "size": 0}
                )
        self._json(200, entries)

    def preupload(self, method, match, query, body):
        repo = self._repo_from(match, write=True)
        _, files = self.server_hub._snapshot(repo, match.group("rev"))
        answers = []
        for item in json.loads(body or b"{}").get("files", []):
            path, size = item["path"], int(item["size"])
            lfs = path.endswith(_LFS_SUFFIXES) or size >= _LFS_MIN_SIZE
            existing = files.get(path)
            oid = None
            if existing is not None:
                oid = existing.lfs_sha256 if lfs else git_blob_sha1(existing.data)
            answers.append(
                {"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid}
            )
        self._json(200, {"files": answers})

    def commit(self, method, match, query, body):
        repo = self._repo_from(match, write=True)
        self._json(200, self.server_hub._commit(repo, match.group("rev"), body))

    def lfs_batch(self, method, match, query, body):
        prefix = match.group("prefix") or ""
        repo_type = {"": "model", "datasets/": "dataset", "spaces/": "space"}[prefix]
        self._require_auth()
        self.server_hub._repo(repo_type, unquote(match.group("repo")), True)
        payload = json.loads(body or b"{}")
        if payload.get("operation") != "upload":
            raise _HubError(HTTPStatus.BAD_REQUEST, "only the upload operation is supported")
        objects = []
        for obj in payload.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            entry = {"oid": oid, "size": size, "authenticated": True}
            if oid not in self.server_hub.lfs_objects:  # already stored objects get no action (client skips them)
                entry["actions"] = {
                    "upload": {"href": f"{self.server_hub.url}/lfs-storage/{oid}?size={size}", "header": {}}
                }
            objects.append(entry)
        self._json(200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"})

    def lfs_put(self, method, match, query, body):
        oid = match.group("oid")
        if hashlib.sha256(body).hexdigest() != oid:
            raise _HubError(HTTPStatus.BAD_REQUEST, f"LFS object {oid}: content does not hash to its oid")
        if "size" in query and int(query["size"][0]) != len(body):
            raise _HubError(HTTPStatus.BAD_REQUEST, f"LFS object {oid}: size {len(body)} != {query['size'][0]}")
        with self.server_hub._lock:
            self.server_hub.lfs_objects[oid] = body
        self._send(200, b"", {"ETag": f'"{oid}"'})

    def resolve(self, method, match, query, body):
        prefix = match.group("prefix") or ""
        repo_type = {"": "model", "datasets/": "dataset", "spaces/": "space"}[prefix]
        repo = self.server_hub._repo(repo_type, unquote(match.group("repo")), self._authorized())
        oid, files = self.server_hub._snapshot(repo, match.group("rev"))
        path = unquote(match.group("path"))
        if path not in files:
            raise _HubError(HTTPStatus.NOT_FOUND, f"Entry not found: {path}", "EntryNotFound")
        entry = files[path]
        headers = {"X-Repo-Commit": oid, "ETag": f'"{entry.etag}"', "Content-Type": "application/octet-stream"}
        if entry.lfs_sha256 is not None:
            headers["X-Linked-Etag"] = f'"{entry.lfs_sha256}"'
            headers["X-Linked-Size"] = str(len(entry.data))
        self._send(200, entry.data, headers, head=method == "HEAD")


_REPO = r"(?P<repo>[^/]+/[^/]+?)"
_ROUTES = [
    (re.compile(r"/api/whoami-v2"), "whoami", ("GET",)),
    (re.compile(r"/api/repos/create"), "create_repo", ("POST",)),
    (re.compile(r"/api/validate-yaml"), "validate_yaml", ("POST",)),
    (
        re.compile(rf"/api/(?P<kind>models|datasets|spaces)/{_REPO}(?:/revision/(?P<rev>[^/]+))?"),
        "repo_info",
        ("GET",),
    ),
    (
        re.compile(rf"/api/(?P<kind>models|datasets|spaces)/{_REPO}/tree/(?P<rev>[^/]+)(?P<path>/.*)?"),
        "tree",
        ("GET",),
    ),
    (re.compile(rf"/api/(?P<kind>models|datasets|spaces)/{_REPO}/paths-info/(?P<rev>[^/]+)"), "paths_info", ("POST",)),
    (re.compile(rf"/api/(?P<kind>models|datasets|spaces)/{_REPO}/preupload/(?P<rev>[^/]+)"), "preupload", ("POST",)),
    (re.compile(rf"/api/(?P<kind>models|datasets|spaces)/{_REPO}/commit/(?P<rev>[^/]+)"), "commit", ("POST",)),
    (re.compile(rf"/(?P<prefix>datasets/|spaces/)?{_REPO}\.git/info/lfs/objects/batch"), "lfs_batch", ("POST",)),
    (re.compile(r"/lfs-storage/(?P<oid>[0-9a-f]{64})"), "lfs_put", ("PUT",)),
    (
        re.compile(rf"/(?P<prefix>datasets/|spaces/)?{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)"),
        "resolve",
        ("GET", "HEAD"),
    ),
]
