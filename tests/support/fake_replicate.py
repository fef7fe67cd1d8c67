"""A small, real Replicate API stand-in for tests: stdlib ``http.server`` on 127.0.0.1.

It implements just the endpoints the ``replicate`` client calls for a prediction's life
(create by model or by version, get, cancel, file upload) plus a "delivery" URL serving the
output image, and records every request so tests can assert on what actually went over the
wire. Behaviour is scripted with :class:`Scenario`; nothing depends on wall-clock time.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image


def png_bytes(
    size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (30, 140, 90)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Scripted:
    """A canned response, served instead of the normal behaviour (e.g. a 429)."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Scenario:
    # Served, in order, to the first create-prediction requests before one succeeds.
    create_responses: list[Scripted] = field(default_factory=list)
    # Served, in order, to the first GET /v1/predictions/{id} requests.
    poll_responses: list[Scripted] = field(default_factory=list)
    # Served, in order, to the first POST /v1/files uploads.
    upload_responses: list[Scripted] = field(default_factory=list)
    # How many polls answer "processing" before the final status; 0 means the create request
    # itself (held open by `Prefer: wait`) already returns the final status; None: never ends.
    polls_until_done: int | None = 0
    final_status: str = "succeeded"
    error: str | None = None
    output: bytes = field(default_factory=png_bytes)
    output_content_type: str = "image/png"
    # Serve the output from another host name (same server) to check credentials stay home.
    output_host: str = "127.0.0.1"
    output_as_list: bool = False


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Prediction:
    id: str
    model: str
    version: str
    input: dict[str, Any]
    status: str = "starting"
    polls: int = 0


_MODEL_CREATE = re.compile(r"^/v1/models/([^/]+)/([^/]+)/predictions$")
_PREDICTION = re.compile(r"^/v1/predictions/([^/]+)$")
_CANCEL = re.compile(r"^/v1/predictions/([^/]+)/cancel$")
_DELIVERY = re.compile(r"^/delivery/([^/]+)/output$")


class FakeReplicate:
    """Start with ``with FakeReplicate(token) as api:``; point the client at ``api.base_url``."""

    def __init__(self, token: str, scenario: Scenario | None = None) -> None:
        self.token = token
        self.scenario = scenario or Scenario()
        self.requests: list[Recorded] = []
        self.predictions: dict[str, _Prediction] = {}
        self.files: dict[str, tuple[str, str, bytes]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        # A short poll interval only makes shutdown() prompt; requests are served immediately.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeReplicate:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    # -- what the tests look at -------------------------------------------------------------

    def received(self, method: str, pattern: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.method == method and re.search(pattern, r.path)]

    @property
    def creates(self) -> list[Recorded]:
        return self.received("POST", r"^/v1/(models/.+/)?predictions$")

    @property
    def polls(self) -> list[Recorded]:
        return self.received("GET", r"^/v1/predictions/[^/]+$")

    @property
    def cancels(self) -> list[Recorded]:
        return self.received("POST", r"/cancel$")

    @property
    def uploads(self) -> list[Recorded]:
        return self.received("POST", r"^/v1/files$")

    @property
    def downloads(self) -> list[Recorded]:
        return self.received("GET", r"^/delivery/")

    # -- behaviour --------------------------------------------------------------------------

    def _prediction_json(self, prediction: _Prediction) -> dict[str, Any]:
        status = prediction.status
        output: Any = None
        if status == "succeeded":
            host = self.scenario.output_host
            url = f"http://{host}:{self.port}/delivery/{prediction.id}/output"
            output = [url] if self.scenario.output_as_list else url
        api = f"{self.base_url}/v1/predictions/{prediction.id}"
        return {
            "id": prediction.id,
            "model": prediction.model,
            "version": prediction.version,
            "status": status,
            "input": prediction.input,
            "output": output,
            "error": self.scenario.error if status == "failed" else None,
            "logs": "",
            "metrics": {},
            "created_at": "2026-11-28T12:00:00.000Z",
            "started_at": None,
            "completed_at": None,
            "urls": {"get": api, "cancel": f"{api}/cancel"},
        }

    def _advance(self, prediction: _Prediction) -> None:
        """One poll's worth of progress."""
        if prediction.status in ("succeeded", "failed", "canceled"):
            return
        prediction.polls += 1
        done_after = self.scenario.polls_until_done
        if done_after is not None and prediction.polls >= done_after:
            prediction.status = self.scenario.final_status
        else:
            prediction.status = "processing"

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple:
        """Return (status, headers, body bytes) for one request; called under the lock."""
        if match := _DELIVERY.match(path):
            # Delivery URLs are public (signed) on the real service: no token check.
            if method != "GET" or match.group(1) not in self.predictions:
                return _problem(404, "Not found")
            return 200, {"Content-Type": self.scenario.output_content_type}, self.scenario.output
        if headers.get("authorization") != f"Bearer {self.token}":
            return _problem(401, "You did not pass a valid authentication token")

        if method == "POST" and (_MODEL_CREATE.match(path) or path == "/v1/predictions"):
            if self.scenario.create_responses:
                return _scripted(self.scenario.create_responses.pop(0))
            payload = json.loads(body)
            model_match = _MODEL_CREATE.match(path)
            prediction = _Prediction(
                id=f"pred{next(self._ids):04d}",
                model="/".join(model_match.groups()) if model_match else "owner/model",
                version=payload.get("version", "hidden"),
                input=payload["input"],
            )
            self.predictions[prediction.id] = prediction
            if self.scenario.polls_until_done == 0:
                prediction.status = self.scenario.final_status
            return _json(201, self._prediction_json(prediction))

        if method == "GET" and (match := _PREDICTION.match(path)):
            if self.scenario.poll_responses:
                return _scripted(self.scenario.poll_responses.pop(0))
            prediction = self.predictions.get(match.group(1))
            if prediction is None:
                return _problem(404, "Prediction not found")
            self._advance(prediction)
            return _json(200, self._prediction_json(prediction))

        if method == "POST" and (match := _CANCEL.match(path)):
            prediction = self.predictions.get(match.group(1))
            if prediction is None:
                return _problem(404, "Prediction not found")
            if prediction.status not in ("succeeded", "failed"):
                prediction.status = "canceled"
            return _json(200, self._prediction_json(prediction))

        if method == "POST" and path == "/v1/files":
            if self.scenario.upload_responses:
                return _scripted(self.scenario.upload_responses.pop(0))
            name, content_type, data = _parse_upload(headers.get("content-type", ""), body)
            file_id = f"file{next(self._ids):04d}"
            self.files[file_id] = (name, content_type, data)
            return _json(
                201,
                {
                    "id": file_id,
                    "name": name,
                    "content_type": content_type,
                    "size": len(data),
                    "etag": hashlib.md5(data).hexdigest(),  # noqa: S324 - mirrors the API
                    "checksums": {"sha256": hashlib.sha256(data).hexdigest()},
                    "metadata": {},
                    "created_at": "2026-11-28T12:00:00.000Z",
                    "expires_at": "2026-11-29T12:00:00.000Z",
                    "urls": {"get": f"https://api.replicate.com/v1/files/{file_id}"},
                },
            )
        return _problem(404, f"No route for {method} {path}")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.0: one request per connection, so no idle keep-alive sockets to tidy up.
            protocol_version = "HTTP/1.0"

            def _serve(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                body = _read_body(self.rfile, headers)
                with fake._lock:
                    fake.requests.append(Recorded(self.command, self.path, headers, body))
                    status, out_headers, out_body = fake.handle(
                        self.command, self.path, headers, body
                    )
                self.send_response(status)
                for name, value in out_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(out_body)))
                self.end_headers()
                self.wfile.write(out_body)

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # keep pytest output clean

        return Handler


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple:
    return (
        status,
        {"Content-Type": "application/json", **(headers or {})},
        json.dumps(body).encode(),
    )


def _problem(status: int, detail: str) -> tuple:
    return _json(status, {"title": "Error", "status": status, "detail": detail})


def _scripted(response: Scripted) -> tuple:
    return _json(response.status, response.body, response.headers)


def _read_body(stream: io.BufferedIOBase, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        # httpx streams multipart uploads chunked when it cannot size them up front.
        chunks = []
        while True:
            size = int(stream.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                stream.readline()
                return b"".join(chunks)
            chunks.append(stream.read(size))
            stream.readline()
    return stream.read(int(headers.get("content-length") or 0))


def _parse_upload(content_type: str, body: bytes) -> tuple[str, str, bytes]:
    message = BytesParser(policy=policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "content":
            return part.get_filename() or "file", part.get_content_type(), part.get_content()
    raise ValueError("multipart upload without a 'content' part")
