"""A loopback fake of the Hugging Face Hub, for tests: the endpoints huggingface_hub 2.4 calls, nothing more.

Download (what `snapshot_download(revision=<sha>)`, `hf_hub_download`, `list_repo_tree`, `get_paths_info`,
`model_info` and `repo_info` call):

    GET  /api/models/{repo}[/revision/{rev}]             model info (sha, siblings, cardData)
    GET  /api/models/{repo}/tree/{rev}[/{path}]          file listing (recursive=, expand=)
    POST /api/models/{repo}/paths-info/{rev}             listing of named paths
    HEAD /{repo}/resolve/{rev}/{path}                    X-Repo-Commit, ETag / X-Linked-Etag, X-Linked-Size
    GET  /{repo}/resolve/{rev}/{path}                    the bytes (Range honoured)

Discussions (`get_repo_discussions`, `get_discussion_details`, `create_discussion`, `comment_discussion`):

    GET  /api/models/{repo}/discussions?p=N
    GET  /api/models/{repo}/discussions/{num}
    POST /api/models/{repo}/discussions                  {"title", "description", "pullRequest"}
    POST /api/models/{repo}/discussions/{num}/comment    {"comment"}

Writes need `Authorization: Bearer <token>` of a known user. Pushes (`push`) and writes through the API
deliver webhook v3 payloads (`repo.content`, `discussion`, `discussion.comment`) to every registered
webhook, in a background thread, with the secret in `X-Webhook-Secret`, as the real Hub does.
LFS files (safetensors, large files) are listed with `lfs.oid` = sha256 and served with the sha256 as
ETag; others with the git blob sha1. `fault` hooks make the Hub lie or stall for hostile-Hub tests.
The server is stdlib (`http.server`), binds 127.0.0.1 on a free port and stops on `close()`.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import http.server
import itertools
import json
import pathlib
import re
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".gguf")
LFS_MIN_SIZE = 10 * 1024 * 1024
_REPO = r"(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)"
_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Blob:
    size: int
    sha256: str
    git_oid: str
    lfs: bool
    data: bytes | None = None  # in memory, or ...
    source: pathlib.Path | None = None  # ... read from this file when served

    def read(self, start: int = 0, end: int | None = None):
        """Yield the bytes [start, end) in chunks."""
        end = self.size if end is None else end
        if self.data is not None:
            for pos in range(start, end, _CHUNK):
                yield self.data[pos:min(end, pos + _CHUNK)]
            return
        with open(self.source, "rb") as fh:
            fh.seek(start)
            left = end - start
            while left > 0:
                chunk = fh.read(min(_CHUNK, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk


@dataclasses.dataclass
class Commit:
    sha: str
    files: dict[str, Blob]
    message: str
    parent: str | None


@dataclasses.dataclass
class Discussion:
    num: int
    title: str
    author: str
    is_pull_request: bool
    status: str = "open"
    base: str | None = None
    events: list[dict] = dataclasses.field(default_factory=list)
    created_at: str = ""


@dataclasses.dataclass
class Repo:
    repo_id: str
    commits: dict[str, Commit] = dataclasses.field(default_factory=dict)
    refs: dict[str, str] = dataclasses.field(default_factory=dict)  # "refs/heads/main" -> sha
    discussions: list[Discussion] = dataclasses.field(default_factory=list)
    private: bool = False


@dataclasses.dataclass
class Webhook:
    url: str
    secret: str | None
    deliveries: list[tuple[dict, int | str]] = dataclasses.field(default_factory=list)  # (payload, status)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def make_blob(data: bytes | None = None, *, path: str, source: pathlib.Path | None = None) -> Blob:
    sha256, sha1 = hashlib.sha256(), hashlib.sha1()
    if data is not None:
        size = len(data)
        sha1.update(b"blob %d\0" % size)
        sha256.update(data)
        sha1.update(data)
    else:
        size = source.stat().st_size
        sha1.update(b"blob %d\0" % size)
        with open(source, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                sha256.update(chunk)
                sha1.update(chunk)
    lfs = path.endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE
    return Blob(size=size, sha256=sha256.hexdigest(), git_oid=sha1.hexdigest(), lfs=lfs, data=data, source=source)


class FakeHub:
    """In-memory repos served over loopback HTTP. Use as a context manager, or `start()` / `close()`."""

    def __init__(self, *, users: Mapping[str, str] | None = None) -> None:
        # token -> user name; the user id in webhook payloads is derived from the name.
        self.users = dict(users or {"hf_fake_guard_token": "guard-bot", "hf_fake_alice_token": "alice"})
        self.repos: dict[str, Repo] = {}
        self.webhooks: list[Webhook] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request served
        # (method, path) -> None, or {"stall": seconds, "status": code, "redirect": url (resolve), "extra_bytes": n,
        # "tree": f(entries) -> entries}: a Hub (or CDN) that stalls, fails, redirects, over-sends or lies.
        self.fault: Callable[[str, str], dict | None] | None = None
        self._lock = threading.RLock()
        self._counter = itertools.count(1)
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._delivery_threads: list[threading.Thread] = []

    # ---- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self.wait_for_deliveries()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "FakeHub not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # ---- test-side API ---------------------------------------------------------------------------------
    @staticmethod
    def user_id(name: str) -> str:
        return hashlib.sha1(name.encode()).hexdigest()[:24]

    def add_webhook(self, url: str, *, secret: str | None) -> Webhook:
        hook = Webhook(url=url, secret=secret)
        with self._lock:
            self.webhooks.append(hook)
        return hook

    def push(self, repo_id: str, files: Mapping[str, bytes | pathlib.Path] | pathlib.Path, *,
             ref: str = "refs/heads/main", message: str = "upload", replace: bool = True,
             notify: bool = True) -> str:
        """Commit `files` (a mapping path -> bytes or file, or a directory) onto `ref`; return the new sha.

        `replace=True` makes the commit hold exactly `files`; False adds them to the ref's current tree.
        """
        if isinstance(files, (str, pathlib.Path)):
            root = pathlib.Path(files)
            files = {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}
        # Small files are copied now (a test may rewrite one between pushes); large ones are served from disk
        # and must not change after the push.
        blobs = {path: (make_blob(v.read_bytes(), path=path) if v.stat().st_size < LFS_MIN_SIZE
                        else make_blob(path=path, source=v)) if isinstance(v, pathlib.Path)
                 else make_blob(bytes(v), path=path) for path, v in files.items()}
        with self._lock:
            repo = self.repos.setdefault(repo_id, Repo(repo_id))
            old = repo.refs.get(ref)
            tree = {} if replace or old is None else dict(repo.commits[old].files)
            tree.update(blobs)
            digest = hashlib.sha1(repr((repo_id, ref, old, next(self._counter),
                                        sorted((p, b.git_oid) for p, b in tree.items()))).encode()).hexdigest()
            repo.commits[digest] = Commit(sha=digest, files=tree, message=message, parent=old)
            repo.refs[ref] = digest
            head = repo.refs.get("refs/heads/main")
        if notify:
            self._emit({"event": {"action": "update", "scope": "repo.content"},
                        "repo": self._repo_payload(repo_id, head),
                        "updatedRefs": [{"ref": ref, "oldSha": old, "newSha": digest}]})
        return digest

    def open_pull_request(self, repo_id: str, files: Mapping[str, bytes | pathlib.Path] | pathlib.Path, *,
                          author: str = "alice", title: str = "update weights") -> tuple[int, str]:
        """A PR: a discussion with `isPullRequest` and a commit on refs/pr/N. Returns (num, sha)."""
        with self._lock:
            repo = self.repos.setdefault(repo_id, Repo(repo_id))
            num = len(repo.discussions) + 1
            repo.discussions.append(Discussion(num=num, title=title, author=author, is_pull_request=True,
                                               base="refs/heads/main", created_at=_now()))
        sha = self.push(repo_id, files, ref=f"refs/pr/{num}", message=title)
        return num, sha

    def comments(self, repo_id: str, num: int) -> list[dict]:
        with self._lock:
            return [e for e in self._discussion(repo_id, num).events if e["type"] == "comment"]

    def discussion_list(self, repo_id: str) -> list[Discussion]:
        with self._lock:
            return list(self.repos[repo_id].discussions)

    def wait_for_deliveries(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = [t for t in self._delivery_threads if t.is_alive()]
                self._delivery_threads = pending
            if not pending or time.monotonic() > deadline:
                return
            pending[0].join(timeout=max(0.0, deadline - time.monotonic()))

    # ---- internals -------------------------------------------------------------------------------------
    def _repo_payload(self, repo_id: str, head: str | None) -> dict:
        owner = repo_id.split("/")[0]
        payload = {"type": "model", "name": repo_id, "id": self.user_id(repo_id), "private": False,
                   "url": {"web": f"{self._base()}/{repo_id}", "api": f"{self._base()}/api/models/{repo_id}"},
                   "owner": {"id": self.user_id(owner)}, "tags": []}
        if head is not None:
            payload["headSha"] = head
        return payload

    def _base(self) -> str:
        return self.endpoint if self._server is not None else "http://fake-hub"

    def _emit(self, payload: dict) -> None:
        payload = {**payload, "webhook": {"id": "fakehook", "version": 3}}
        with self._lock:
            hooks = list(self.webhooks)
        for hook in hooks:
            thread = threading.Thread(target=self._deliver, args=(hook, payload), daemon=True)
            with self._lock:
                self._delivery_threads.append(thread)
            thread.start()

    def _deliver(self, hook: Webhook, payload: dict) -> None:
        headers = {"Content-Type": "application/json"}
        if hook.secret is not None:
            headers["X-Webhook-Secret"] = hook.secret
        request = urllib.request.Request(hook.url, data=json.dumps(payload).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status: int | str = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError as exc:
            status = f"error: {exc}"
        with self._lock:
            hook.deliveries.append((payload, status))

    def _discussion(self, repo_id: str, num: int) -> Discussion:
        for d in self.repos[repo_id].discussions:
            if d.num == num:
                return d
        raise KeyError(num)

    def _resolve(self, repo: Repo, rev: str) -> Commit | None:
        rev = urllib.parse.unquote(rev)
        if rev in repo.commits:
            return repo.commits[rev]
        for name in (rev, f"refs/heads/{rev}", f"refs/tags/{rev}"):
            if name in repo.refs:
                return repo.commits[repo.refs[name]]
        return None

    def _comment_event(self, author: str, text: str) -> dict:
        return {"id": hashlib.sha1(f"{author}{text}{next(self._counter)}".encode()).hexdigest()[:24],
                "type": "comment", "createdAt": _now(), "author": {"name": author, "id": self.user_id(author)},
                "data": {"edited": False, "hidden": False, "latest": {"raw": text, "html": text}, "numEdits": 0}}

    def _discussion_json(self, repo_id: str, d: Discussion, *, details: bool) -> dict:
        out = {"num": d.num, "title": d.title, "status": d.status, "isPullRequest": d.is_pull_request,
               "createdAt": d.created_at, "author": {"name": d.author}, "repo": {"name": repo_id, "type": "model"},
               "numComments": sum(e["type"] == "comment" for e in d.events), "pinned": False}
        if details:
            out["events"] = d.events
            out["changes"] = {"base": d.base} if d.is_pull_request else {}
            out["filesWithConflicts"] = []
        return out

    def _discussion_webhook(self, repo_id: str, d: Discussion, scope: str, comment: dict | None) -> dict:
        payload = {"event": {"action": "create", "scope": scope}, "repo": self._repo_payload(repo_id, None),
                   "discussion": {"id": f"d{d.num}", "num": d.num, "title": d.title, "status": d.status,
                                  "isPullRequest": d.is_pull_request, "author": {"id": self.user_id(d.author)},
                                  "url": {"web": f"{self._base()}/{repo_id}/discussions/{d.num}"}}}
        if comment is not None:
            payload["comment"] = {"id": comment["id"], "author": {"id": comment["author"]["id"]},
                                  "content": comment["data"]["latest"]["raw"], "hidden": False,
                                  "url": {"web": f"{self._base()}/{repo_id}/discussions/{d.num}#{comment['id']}"}}
        return payload


class _Handler(http.server.BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    # ---- plumbing --------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes = b"", *, headers: Mapping[str, str] | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers=headers)

    def _error(self, status: int, message: str, *, code: str | None = None) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._json({"error": message}, status, headers)

    def _body(self) -> bytes:
        return self._raw_body

    def _user(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return self.fake.users.get(auth[7:]) if auth.startswith("Bearer ") else None

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)  # read it all: the connection is kept alive
        self._raw_body = self.rfile.read(length) if length else b""
        url = urllib.parse.urlsplit(self.path)
        path, query = urllib.parse.unquote(url.path), urllib.parse.parse_qs(url.query)
        with self.fake._lock:
            self.fake.requests.append((self.command, path))
        fault = self.fake.fault(self.command, path) if self.fake.fault else None
        if fault:
            if fault.get("stall"):
                time.sleep(fault["stall"])
            if fault.get("status"):
                return self._error(fault["status"], "injected fault")
        for pattern, handler in _ROUTES:
            if self.command not in handler.methods:
                continue
            m = re.fullmatch(pattern, path)
            if m:
                repo = self.fake.repos.get(m.group("repo"))
                if repo is None:
                    return self._error(404, "Repository not found", code="RepoNotFound")
                return handler(self, repo, query, fault, **{k: v for k, v in m.groupdict().items() if k != "repo"})
        self._error(404, f"no route for {self.command} {path}")

    do_GET = do_HEAD = do_POST = _dispatch

    # ---- download --------------------------------------------------------------------------------------
    def model_info(self, repo: Repo, query, fault, rev: str | None = None) -> None:
        commit = self.fake._resolve(repo, rev or "main")
        if commit is None:
            return self._error(404, "Revision not found", code="RevisionNotFound")
        card = _card_data(commit)
        self._json({"id": repo.repo_id, "modelId": repo.repo_id, "sha": commit.sha, "private": repo.private,
                    "siblings": [{"rfilename": p} for p in sorted(commit.files)], "tags": [],
                    "cardData": card, "lastModified": _now(), "disabled": False, "gated": False})
    model_info.methods = ("GET",)

    def tree(self, repo: Repo, query, fault, rev: str, sub: str | None = None) -> None:
        commit = self.fake._resolve(repo, rev)
        if commit is None:
            return self._error(404, "Revision not found", code="RevisionNotFound")
        recursive = query.get("recursive", ["false"])[0] in ("true", "1", "True")
        prefix = (sub.strip("/") + "/") if sub else ""
        entries, folders = [], set()
        for path in sorted(commit.files):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):]
            if "/" in rest:
                folder = prefix + rest.split("/")[0]
                if folder not in folders:
                    folders.add(folder)
                    entries.append({"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(),
                                    "size": 0, "path": folder})
                if not recursive:
                    continue
            entries.append(_file_entry(path, commit.files[path]))
        if recursive:
            for path in sorted(commit.files):  # intermediate folders, as the Hub lists them
                parts = path[len(prefix):].split("/")[:-1] if path.startswith(prefix) else []
                for i in range(1, len(parts)):
                    folder = prefix + "/".join(parts[:i + 1])
                    if folder not in folders:
                        folders.add(folder)
                        entries.append({"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(),
                                        "size": 0, "path": folder})
        if fault and "tree" in fault:
            entries = fault["tree"](entries)
        self._json(entries)
    tree.methods = ("GET",)

    def paths_info(self, repo: Repo, query, fault, rev: str) -> None:
        commit = self.fake._resolve(repo, rev)
        if commit is None:
            return self._error(404, "Revision not found", code="RevisionNotFound")
        body = self._body()
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            paths = json.loads(body or b"{}").get("paths", [])
        else:
            paths = urllib.parse.parse_qs(body.decode()).get("paths", [])
        self._json([_file_entry(p, commit.files[p]) for p in paths if p in commit.files])
    paths_info.methods = ("POST",)

    def resolve(self, repo: Repo, query, fault, rev: str, file: str) -> None:
        commit = self.fake._resolve(repo, rev)
        if commit is None:
            return self._error(404, "Revision not found", code="RevisionNotFound")
        blob = commit.files.get(file)
        if blob is None:
            return self._error(404, "Entry not found", code="EntryNotFound")
        etag = blob.sha256 if blob.lfs else blob.git_oid
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if blob.lfs:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(blob.size)})
        if fault and fault.get("redirect"):  # as the Hub redirects LFS files to its CDN
            return self._send(302, headers={**headers, "Location": fault["redirect"]})
        start, end, status = 0, blob.size, 200
        rng = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if rng:
            start = int(rng.group(1))
            end = min(blob.size, int(rng.group(2)) + 1) if rng.group(2) else blob.size
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{blob.size}"
        extra = fault.get("extra_bytes", 0) if fault else 0  # a Hub/CDN that sends more than it declared
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + extra))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD":
            return
        for chunk in blob.read(start, end):
            self.wfile.write(chunk)
        if extra:
            self.wfile.write(b"\0" * extra)
    resolve.methods = ("GET", "HEAD")

    # ---- discussions -----------------------------------------------------------------------------------
    def discussions(self, repo: Repo, query, fault) -> None:
        if self.command == "POST":
            return self._create_discussion(repo)
        page, size = int(query.get("p", ["0"])[0]), 50
        with self.fake._lock:
            items = list(reversed(repo.discussions))
        chunk = items[page * size:(page + 1) * size]
        self._json({"discussions": [self.fake._discussion_json(repo.repo_id, d, details=False) for d in chunk],
                    "count": len(items), "start": page * size, "numClosedDiscussions": 0})
    discussions.methods = ("GET", "POST")

    def _create_discussion(self, repo: Repo) -> None:
        user = self._user()
        if user is None:
            return self._error(401, "Invalid credentials in Authorization header")
        body = json.loads(self._body() or b"{}")
        with self.fake._lock:
            num = len(repo.discussions) + 1
            d = Discussion(num=num, title=body.get("title", ""), author=user,
                           is_pull_request=bool(body.get("pullRequest")), created_at=_now())
            first = self.fake._comment_event(user, body.get("description") or "")
            d.events.append(first)
            repo.discussions.append(d)
        self.fake._emit(self.fake._discussion_webhook(repo.repo_id, d, "discussion", first))
        self._json({"num": num, "url": f"{self.fake._base()}/{repo.repo_id}/discussions/{num}"})

    def discussion(self, repo: Repo, query, fault, num: str) -> None:
        with self.fake._lock:
            try:
                d = self.fake._discussion(repo.repo_id, int(num))
            except KeyError:
                return self._error(404, "Discussion not found")
            self._json(self.fake._discussion_json(repo.repo_id, d, details=True))
    discussion.methods = ("GET",)

    def comment(self, repo: Repo, query, fault, num: str) -> None:
        user = self._user()
        if user is None:
            return self._error(401, "Invalid credentials in Authorization header")
        text = json.loads(self._body() or b"{}").get("comment", "")
        with self.fake._lock:
            try:
                d = self.fake._discussion(repo.repo_id, int(num))
            except KeyError:
                return self._error(404, "Discussion not found")
            event = self.fake._comment_event(user, text)
            d.events.append(event)
        self.fake._emit(self.fake._discussion_webhook(repo.repo_id, d, "discussion.comment", event))
        self._json({"newMessage": event})
    comment.methods = ("POST",)


def _file_entry(path: str, blob: Blob) -> dict:
    entry = {"type": "file", "oid": blob.git_oid, "size": blob.size, "path": path}
    if blob.lfs:
        entry["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": 134}
    return entry


def _card_data(commit: Commit) -> dict | None:
    """The YAML front matter of README.md, parsed (the Hub's cardData)."""
    blob = commit.files.get("README.md")
    if blob is None or blob.size > 1 << 20:
        return None
    text = b"".join(blob.read()).decode("utf-8", "replace")
    m = re.match(r"---\n(.*?)\n---", text, re.S)
    if not m:
        return None
    import yaml

    try:
        data = yaml.safe_load(m.group(1))
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


_ROUTES: list[tuple[str, Callable]] = [
    (rf"/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<sub>.*))?", _Handler.tree),
    (rf"/api/models/{_REPO}/paths-info/(?P<rev>[^/]+)", _Handler.paths_info),
    (rf"/api/models/{_REPO}/revision/(?P<rev>[^/]+)", _Handler.model_info),
    (rf"/api/models/{_REPO}/discussions/(?P<num>\d+)/comment", _Handler.comment),
    (rf"/api/models/{_REPO}/discussions/(?P<num>\d+)", _Handler.discussion),
    (rf"/api/models/{_REPO}/discussions", _Handler.discussions),
    (rf"/api/models/{_REPO}", _Handler.model_info),
    (rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", _Handler.resolve),
]
