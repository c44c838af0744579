"""The suite's one fake OpenAI-compatible chat endpoint (served by the ``openai_server`` fixture of conftest.py).

:class:`FakeOpenAI` holds what the server does: the reply text it scripts (``content``, which each test's
subclass writes), the HTTP faults it injects, the error every request gets under ``always`` and every
request it received. :func:`handler` speaks the chat-completions protocol over it.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler

CHAT_PATH = "/v1/chat/completions"


class FakeOpenAI:
    """State of the fake server; a subclass scripts ``content(messages)``."""

    def __init__(self, faults: dict[int, str] | None = None, always: int | None = None):
        self.faults = dict(faults or {})  # request index -> "429" | "500" | "garbage"
        self.always = always  # answer every request with this HTTP status
        self.requests: list[dict] = []  # {"path", "body", "auth"} of each request, in order
        self.served: list[str] = []  # the faults and ``always`` errors served, in order
        self.lock = threading.Lock()

    def content(self, messages: list[dict]) -> str:
        raise NotImplementedError

    def error(self, status: int, auth: str) -> str:
        """The message of an ``always`` error: a 401 names the key it was sent, as OpenAI's does."""
        return f"Incorrect API key provided: {auth.removeprefix('Bearer ')}" if status == 401 else "overloaded"


def _completion(idx: int, model: str, content: str) -> dict:
    return {
        "id": f"chatcmpl-{idx}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }


def handler(state: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    """A request handler class that serves ``state``."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _send(self, code: int, body: bytes, ctype: str = "application/json"):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, code: int, message: str, served: str):
            state.served.append(served)
            self._send(code, json.dumps({"error": {"message": message, "type": "error"}}).encode())

        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            auth = self.headers.get("Authorization", "")
            with state.lock:
                idx = len(state.requests)
                state.requests.append({"path": self.path, "body": body, "auth": auth})
                if self.path != CHAT_PATH:
                    return self._send(404, b'{"error": {"message": "not found"}}')
                if state.always is not None:
                    return self._error(state.always, state.error(state.always, auth), str(state.always))
                fault = state.faults.pop(idx, None)
                if fault in ("429", "500"):
                    return self._error(int(fault), f"injected {fault}", fault)
                if fault == "garbage":
                    state.served.append(fault)
                    return self._send(200, b"<html>upstream proxy error</html>", "text/html")
                content = state.content(body["messages"])
            self._send(200, json.dumps(_completion(idx, body["model"], content)).encode())

    return Handler
