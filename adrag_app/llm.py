"""One way to talk to an OpenAI-compatible ``/v1/chat/completions`` endpoint.

Used by the planner (:class:`~adrag_app.planner.planner.LlmPlanner`) and the LLM-driven agent
(:class:`~adrag_app.agent.llm_agent.LlmAgent`): the same URL handling, the same headers, the
same short error wording. The API key lives only in the client's headers; it is never in a
repr, an error, a log line or a trace.
"""

from __future__ import annotations

from typing import Any


def chat_url(base_url: str) -> str:
    """The chat-completions URL for a base URL with or without ``/v1`` (or the full URL)."""
    base = base_url.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    # OpenAI clients take a base URL ending in /v1; accept one without it too.
    return f"{base}/chat/completions" if base.endswith("/v1") else f"{base}/v1/chat/completions"


def short_error(error: BaseException) -> str:
    """A few safe words for an LLM failure: no URL, no headers, no response body."""
    import httpx

    if isinstance(error, httpx.HTTPStatusError):
        return f"HTTP {error.response.status_code}"
    if isinstance(error, httpx.TimeoutException):
        return "timed out"
    if isinstance(error, httpx.TransportError):
        return f"cannot connect: {type(error).__name__}"
    # Messages of our own parsing errors are safe and short; others are cut.
    return f"{type(error).__name__}: {str(error)[:120]}"


class ChatClient:
    """POSTs one chat-completions request and returns the first choice's ``message``."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "",
        *,
        timeout: float = 20.0,
        transport: Any = None,  # an httpx transport; tests pass httpx.MockTransport
    ) -> None:
        self.url = chat_url(base_url)
        self.model = model
        self._api_key = api_key
        self.timeout = timeout
        self._transport = transport

    def __repr__(self) -> str:  # never the key
        return f"ChatClient(url={self.url!r}, model={self.model!r})"

    def complete(self, messages: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
        """The model's message (``content``, maybe ``tool_calls`` or ``refusal``); raises on
        any HTTP error, timeout or a body that is not a chat completion."""
        import httpx

        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        body = {"model": self.model, "messages": messages, **options}
        with httpx.Client(timeout=self.timeout, transport=self._transport) as client:
            response = client.post(self.url, json=body, headers=headers)
            response.raise_for_status()
            message = response.json()["choices"][0]["message"]
        if not isinstance(message, dict):
            raise ValueError("the answer's message is not a JSON object")
        return message
