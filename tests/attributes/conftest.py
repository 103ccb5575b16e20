"""A scripted OpenAI-compatible server on 127.0.0.1 for the generator tool's tests.

It answers ``POST /v1/chat/completions`` like a chat model that follows the two SemPT
prompts: step 1 gets four attributes, step 2 gets one sentence per attribute naming the
class. ``script`` overrides answers: key ``"step1"`` or a class name, value a list of
actions used by the first requests for that key (then good answers resume). An action is
an answer text, ``RATE_LIMIT`` (HTTP 429) or ``DROP`` (connection closed, no response).
"""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

RATE_LIMIT = object()
DROP = object()
ATTRIBUTES = ["shape", "colour", "texture", "setting"]


def good_step1() -> str:
    return json.dumps({"attributes": [{"name": a, "definition": f"the {a} of the thing"} for a in ATTRIBUTES]})


def good_step2(classname: str, attributes=ATTRIBUTES) -> str:
    return json.dumps({a: [f"A {classname} shows a distinctive {a} in this photo."] for a in attributes})


class FakeLLM:
    # Reached through the fixture (tests do not import conftest, whose module name is shared).
    RATE_LIMIT, DROP, ATTRIBUTES = RATE_LIMIT, DROP, ATTRIBUTES
    good_step2 = staticmethod(good_step2)

    def __init__(self):
        self.script: dict[str, list] = {}
        self.requests: list[dict] = []  # every request body received, in order
        self.lock = threading.Lock()

    def key_of(self, prompt: str) -> str:
        if "Step 1 of 2" in prompt:
            return "step1"
        return re.search(r'Describe the category "(.*)" along', prompt).group(1)

    def next_action(self, body: dict):
        key = self.key_of(body["messages"][0]["content"])
        with self.lock:
            self.requests.append(body)
            pending = self.script.get(key)
            if pending:
                return pending.pop(0)
        return good_step1() if key == "step1" else good_step2(key)

    def count(self, key: str) -> int:
        return sum(self.key_of(b["messages"][0]["content"]) == key for b in self.requests)


def _handler(llm: FakeLLM):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep pytest output clean
            pass

        def _json(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != "/v1/chat/completions":
                return self._json(404, {"error": {"message": f"no route {self.path}"}})
            action = llm.next_action(body)
            if action is DROP:
                self.close_connection = True
                self.connection.shutdown(2)  # the client sees the socket close mid-request
                return
            if action is RATE_LIMIT:
                return self._json(429, {"error": {"message": "slow down", "type": "rate_limit"}})
            self._json(200, {
                "id": f"cmpl-{len(llm.requests)}", "object": "chat.completion", "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": action}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            })

    return Handler


@pytest.fixture
def fake_llm():
    """(FakeLLM, base_url) with the server running for the test."""
    llm = FakeLLM()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(llm))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield llm, f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def free_url():
    """A base URL on 127.0.0.1 where nothing listens (the port was just released)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
