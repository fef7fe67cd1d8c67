"""A small, real OpenAI-compatible chat endpoint for tests: stdlib ``http.server`` on 127.0.0.1.

``POST /v1/chat/completions`` answers with the next scripted :class:`Answer` (a text message,
a refusal, ``tool_calls``, an HTTP error, a body that is not JSON, or an answer held back past
the client's timeout); every request is recorded so tests can check what the model was shown
and which key was sent. Nothing depends on wall-clock time: a held answer waits on an event
that closing the server sets.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from adrag_app.service.tool import TOOL_NAME


@dataclass
class Answer:
    """One scripted reply. ``message`` is the choice's message; ``status`` an HTTP status
    (with ``raw`` as the body when given); ``hold`` keeps the client waiting until the server
    closes (for timeouts); ``gate`` holds it until the test sets the event."""

    message: dict[str, Any] = field(default_factory=dict)
    status: int = 200
    raw: bytes | None = None
    hold: bool = False
    # Answer only once the test sets it (or the server closes): a turn kept running for as
    # long as a test needs, without a sleep.
    gate: threading.Event | None = None


def text(content: str) -> Answer:
    return Answer({"role": "assistant", "content": content})


def refusal(words: str) -> Answer:
    return Answer({"role": "assistant", "content": None, "refusal": words})


def tool_call(arguments: dict[str, Any] | str, content: str | None = None) -> Answer:
    """A call of adrag's tool; ``arguments`` as a dict (encoded) or a raw (maybe bad) string."""
    encoded = arguments if isinstance(arguments, str) else json.dumps(arguments)
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": TOOL_NAME, "arguments": encoded},
    }
    return Answer({"role": "assistant", "content": content, "tool_calls": [call]})


class FakeLlm:
    """``with FakeLlm(key, [answers...]) as llm:``; point the agent at ``llm.base_url``."""

    def __init__(self, api_key: str, answers: list[Answer] | None = None) -> None:
        self.api_key = api_key
        self.answers = list(answers or [])
        self.requests: list[dict[str, Any]] = []  # request bodies, as JSON
        self.auth: list[str] = []  # Authorization headers received
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeLlm:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()  # releases held answers
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _next(self, body: bytes, auth: str) -> tuple[Answer | None, int, bytes]:
        with self._lock:
            self.requests.append(json.loads(body))
            self.auth.append(auth)
            if auth != f"Bearer {self.api_key}":
                return None, 401, b'{"error": {"message": "bad key"}}'
            if not self.answers:
                return None, 500, b'{"error": {"message": "no scripted answer left"}}'
            answer = self.answers.pop(0)
        if answer.raw is not None:
            return answer, answer.status, answer.raw
        if answer.status != 200:
            return answer, answer.status, b'{"error": {"message": "scripted failure"}}'
        completion = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": "fake",
            "choices": [{"index": 0, "message": answer.message, "finish_reason": "stop"}],
        }
        return answer, 200, json.dumps(completion).encode()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/v1/chat/completions":
                    answer, status, out = None, 404, b'{"error": {"message": "no route"}}'
                else:
                    answer, status, out = fake._next(body, self.headers.get("Authorization", ""))
                if answer is not None and answer.hold:
                    # Past the client's timeout: it gives up; closing the server ends the wait.
                    fake._closing.wait()
                    return
                if answer is not None and answer.gate is not None:
                    while not (answer.gate.wait(0.05) or fake._closing.is_set()):
                        pass
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # keep pytest output clean

        return Handler
