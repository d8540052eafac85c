"""A small threaded HTTP server with routing, shared by the emulators.

Handlers receive a :class:`Request` and return a :class:`Response`.  Servers bind to 127.0.0.1 on a free
port, so many emulators (one per emulated portal) can run side by side in one test process.
"""
from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qsl, urlsplit


def parse_php_form(pairs: list[tuple[str, str]]) -> dict:
    """Decode PHP bracket notation (``a[b][0]=x``, ``a[]=y``) into nested dicts/lists, as PHP does."""
    root: dict = {}
    for key, value in pairs:
        m = re.match(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$", key)
        if not m:
            root[key] = value
            continue
        parts = [m.group(1)] + re.findall(r"\[([^\[\]]*)\]", m.group(2))
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":
                part = str(sum(1 for k in node if k.isdigit())) if isinstance(node, dict) else "0"
            if last:
                node[part] = value
            else:
                nxt = node.get(part)
                if not isinstance(nxt, dict):
                    nxt = {}
                    node[part] = nxt
                node = nxt
    return _lists(root)


def _lists(node):
    """Turn dicts whose keys are all 0..n-1 into lists (PHP arrays serialised by json_encode)."""
    if not isinstance(node, dict):
        return node
    node = {k: _lists(v) for k, v in node.items()}
    if node and all(k.isdigit() for k in node) and sorted(int(k) for k in node) == list(range(len(node))):
        return [node[str(i)] for i in range(len(node))]
    return node


def php_build_query(data, prefix: str = "") -> list[tuple[str, str]]:
    """The inverse of :func:`parse_php_form`: nested dicts/lists to bracketed pairs."""
    pairs: list[tuple[str, str]] = []
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, (list, tuple)):
        items = enumerate(data)
    else:
        return [(prefix, _scalar(data))]
    for k, v in items:
        key = f"{prefix}[{k}]" if prefix else str(k)
        if isinstance(v, (dict, list, tuple)):
            pairs.extend(php_build_query(v, key))
        else:
            pairs.append((key, _scalar(v)))
    return pairs


def _scalar(v) -> str:
    if v is True:
        return "1"
    if v is False or v is None:
        return ""
    return str(v)


@dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes
    client: tuple

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def json(self):
        return json.loads(self.body or b"null")

    def form(self) -> dict:
        """Form body in PHP bracket notation (the way Bitrix24 and PHP read it)."""
        return parse_php_form(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))

    def params(self) -> dict:
        """Query string merged with a JSON or form body, the way Bitrix24's REST endpoint reads input."""
        merged = parse_php_form(list(self.query_pairs))
        if self.body:
            if self.content_type == "application/json":
                body = self.json()
                if isinstance(body, dict):
                    merged.update(body)
            elif self.content_type in ("application/x-www-form-urlencoded", ""):
                merged.update(self.form())
        return merged

    query_pairs: list = field(default_factory=list)


@dataclass
class Response:
    status: int = 200
    body: bytes | str | dict | list | None = None
    headers: dict = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, dict]:
        headers = dict(self.headers)
        body = self.body
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json; charset=utf-8")
        elif isinstance(body, str):
            body = body.encode()
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        elif body is None:
            body = b""
        return body, headers


def json_response(data, status: int = 200, **headers) -> Response:
    return Response(status=status, body=data, headers=headers)


Route = tuple[str, re.Pattern, Callable]


class EmulatorServer:
    """One HTTP server on 127.0.0.1:<free port>, with regex routes: ``add_route("POST", r"^/x/(?P<id>\\d+)$", fn)``.

    ``fn(request, **groups)`` returns a Response.  Unmatched paths answer 404 JSON.  ``requests_log`` keeps
    (method, path, status) of every call for assertions.
    """

    def __init__(self, name: str = "emulator", host: str = "127.0.0.1", port: int = 0):
        self.name = name
        self.routes: list[Route] = []
        self.requests_log: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                pairs = parse_qsl(parts.query, keep_blank_values=True)
                req = Request(
                    method=self.command,
                    path=parts.path,
                    query=dict(pairs),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    client=self.client_address,
                    query_pairs=pairs,
                )
                resp = emulator.dispatch(req)
                payload, headers = resp.encoded()
                self.send_response(resp.status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}"

    def add_route(self, method: str, pattern: str, fn: Callable) -> None:
        self.routes.append((method.upper(), re.compile(pattern), fn))

    def dispatch(self, req: Request) -> Response:
        for method, pattern, fn in self.routes:
            m = pattern.match(req.path)
            if m and (method == "*" or method == req.method):
                try:
                    resp = fn(req, **m.groupdict())
                except Exception as exc:  # an emulator bug must show up loudly, not as a hang
                    resp = json_response({"error": "EMULATOR_BUG", "error_description": repr(exc)}, 500)
                break
        else:
            resp = json_response({"error": "NOT_FOUND", "error_description": f"{req.method} {req.path}"}, 404)
        with self._lock:
            self.requests_log.append((req.method, req.path, resp.status))
        return resp

    def start(self) -> "EmulatorServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def now() -> float:
    return time.time()
