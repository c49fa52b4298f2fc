"""A real loopback HTTP server speaking the OpenAI chat-completions protocol, for tests.

Each request consumes the next scripted behaviour, or the default (an obedient answer)::

    with FakeOpenAIServer() as server:
        server.script(status(429, retry_after=0.2), ok({"decision": "answer", ...}))
        model = OpenAIChatModel(model="m", base_url=server.url)
        ...
        assert [r.idempotency_key for r in server.requests] == ["k", "k"]

Behaviours: ``ok``, ``status``, ``delay``, ``malformed``, ``finish_length``, ``empty``, ``refusal``,
``no_usage``, ``hang_up``, ``cut_stream``. Requests with ``"stream": true`` get SSE chunks.

The Batch API too: ``POST /v1/files`` (a multipart JSONL upload), ``POST /v1/batches`` (each line
of the file is answered like a chat request, consuming the next behaviour: a ``status`` behaviour
becomes that line's error response), ``GET /v1/batches/<id>`` (``in_progress`` on the first poll,
then ``completed``) and ``GET /v1/files/<id>/content``. ``server.files`` and ``server.batches``
hold what was uploaded and created.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
STREAM_PIECE_CHARS = 16

# None: the obedient answer for the request; a callable: made from the request's messages.
Content = str | dict[str, Any] | Callable[[list[dict[str, Any]]], dict[str, Any]] | None


@dataclass(frozen=True)
class Behaviour:
    """How the server answers one request; build these with the functions below."""

    kind: str = "reply"  # "reply" | "status" | "hang_up"
    content: Content = None
    usage: bool | tuple[int, int] = True  # True: computed, (prompt, completion): exactly these
    finish_reason: str = "stop"
    refusal: str | None = None
    status: int = 200
    retry_after: float | None = None
    body: str | None = None
    delay_s: float = 0.0
    cut_after_chunks: int | None = None


def ok(content: Content = None, usage: bool | tuple[int, int] = True) -> Behaviour:
    """A normal completion; ``content`` is a dict (sent as JSON), raw text, or None (obedient)."""
    return Behaviour(content=content, usage=usage)


def status(code: int, retry_after: float | None = None, body: str | None = None) -> Behaviour:
    """An HTTP error, with an OpenAI-style error body unless ``body`` is given."""
    return Behaviour(kind="status", status=code, retry_after=retry_after, body=body)


def delay(seconds: float, content: Content = None) -> Behaviour:
    """Wait, then answer normally: past the client's read timeout this is a timeout."""
    return Behaviour(content=content, delay_s=seconds)


def malformed(text: str = "{not json") -> Behaviour:
    return Behaviour(content=text)


def finish_length(content: str = '{"decision": "answer", "confidence": 0.9, "cla') -> Behaviour:
    """A reply cut by the token limit: partial content and ``finish_reason: length``."""
    return Behaviour(content=content, finish_reason="length")


def empty() -> Behaviour:
    return Behaviour(content="")


def refusal(text: str = "I can't help with that.") -> Behaviour:
    return Behaviour(content="", refusal=text)


def no_usage(content: Content = None) -> Behaviour:
    """A normal completion without the ``usage`` object, as some local servers send."""
    return Behaviour(content=content, usage=False)


def hang_up() -> Behaviour:
    """Close the connection without sending any response."""
    return Behaviour(kind="hang_up")


def cut_stream(after_chunks: int = 1, content: Content = None) -> Behaviour:
    """For ``stream: true``: send this many SSE events, then drop the connection mid-body."""
    return Behaviour(content=content, cut_after_chunks=after_chunks)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it; header names are lower-case."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float = field(default_factory=time.monotonic)

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))


def obedient_answer(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Answer with one claim citing passage 1 (its first line), or refuse when there is none."""
    user = next((m["content"] for m in messages if m.get("role") == "user"), "")
    found = re.search(r"^\[1\][^\n]*\n<<<\n(.*?)\n>>>", user, flags=re.MULTILINE | re.DOTALL)
    if not found:
        return {"decision": "refuse", "confidence": 0.9, "claims": []}
    first_line = found.group(1).strip().splitlines()[0]
    return {
        "decision": "answer",
        "confidence": 0.9,
        "claims": [{"text": first_line, "passages": [1]}],
    }


class FakeOpenAIServer:
    """A ``ThreadingHTTPServer`` on 127.0.0.1 in a background thread; a context manager."""

    def __init__(self, default: Behaviour | None = None) -> None:
        self.default = default or ok()
        self.requests: list[RecordedRequest] = []
        self._queue: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL to give an OpenAI client (ends in ``/v1``)."""
        assert self._httpd is not None, "the server is not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours for the next requests, in order; then the default applies."""
        with self._lock:
            self._queue.extend(behaviours)

    def start(self) -> FakeOpenAIServer:
        handler = type("BoundHandler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a delay
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _receive(self, request: RecordedRequest) -> Behaviour:
        with self._lock:
            self.requests.append(request)
            return self._queue.popleft() if self._queue else self.default

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAIServer]:
    """A started ``FakeOpenAIServer``; register with ``pytest_plugins`` in the root conftest."""
    with FakeOpenAIServer() as server:
        yield server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, like the real API
    fake: FakeOpenAIServer

    def log_message(self, format: str, *args: Any) -> None:  # the stdlib's signature
        pass  # keep test output clean

    def do_GET(self) -> None:  # the stdlib's name
        path = self.path.split("?")[0]
        batch = re.fullmatch(r"/v1/batches/([\w-]+)", path)
        content = re.fullmatch(r"/v1/files/([\w-]+)/content", path)
        if batch and batch.group(1) in self.fake.batches:
            record = self.fake.batches[batch.group(1)]
            record["polls"] += 1
            self._send_json(200, _batch_object(record))
        elif content and content.group(1) in self.fake.files:
            data = self.fake.files[content.group(1)]
            self._send_bytes(200, data, "application/octet-stream", {})
        else:
            self._send_json(404, _error_body(404, f"no route {self.path}"))

    def do_POST(self) -> None:  # the stdlib's name
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.split("?")[0]
        if path == "/v1/files":
            self._upload(raw)
            return
        if path == "/v1/batches":
            self._create_batch(json.loads(raw))
            return
        body = json.loads(raw) if raw else {}
        headers = {name.lower(): value for name, value in self.headers.items()}
        behaviour = self.fake._receive(RecordedRequest(self.path, headers, body))
        if self.path.split("?")[0] not in CHAT_PATHS:
            self._send_json(404, _error_body(404, f"no route {self.path}"))
            return
        try:
            self._respond(behaviour, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its read timeout)

    def _upload(self, raw: bytes) -> None:
        envelope = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + raw
        parts = BytesParser(policy=HTTP).parsebytes(envelope).iter_parts()
        fields = {part.get_param("name", header="content-disposition"): part for part in parts}
        data = fields["file"].get_payload(decode=True)
        file_id = f"file-{len(self.fake.files) + 1}"
        self.fake.files[file_id] = data
        self._send_json(200, _file_object(file_id, len(data), "batch"))

    def _create_batch(self, request: dict[str, Any]) -> None:
        """Answer every line now; the batch reports it on the second status poll."""
        lines = []
        for line in self.fake.files[request["input_file_id"]].decode().splitlines():
            item = json.loads(line)
            recorded = RecordedRequest(item["url"], {}, item["body"])
            behaviour = self.fake._receive(recorded)
            if behaviour.kind == "status":
                code, payload = behaviour.status, _error_body(behaviour.status, "scripted")
            else:
                code, payload = 200, _Reply.build(behaviour, item["body"]).completion()
            response = {"status_code": code, "request_id": f"req-{len(lines)}", "body": payload}
            lines.append(
                {
                    "id": f"batch_req_{len(lines)}",
                    "custom_id": item["custom_id"],
                    "response": response,
                    "error": None,
                }
            )
        output_id = f"file-{len(self.fake.files) + 1}"
        self.fake.files[output_id] = "\n".join(json.dumps(line) for line in lines).encode()
        batch_id = f"batch_{len(self.fake.batches) + 1}"
        record = {
            "id": batch_id,
            "request": request,
            "output_file_id": output_id,
            "total": len(lines),
            "polls": 0,
        }
        self.fake.batches[batch_id] = record
        self._send_json(200, _batch_object(record))

    def _respond(self, behaviour: Behaviour, body: dict[str, Any]) -> None:
        if behaviour.delay_s:
            self.fake._sleep(behaviour.delay_s)
        if behaviour.kind == "hang_up":
            self.close_connection = True
            return
        if behaviour.kind == "status":
            self._send_status(behaviour)
            return
        reply = _Reply.build(behaviour, body)
        if body.get("stream"):
            self._send_stream(reply, body, behaviour.cut_after_chunks)
        else:
            self._send_json(200, reply.completion())

    def _send_status(self, behaviour: Behaviour) -> None:
        text = (
            behaviour.body
            if behaviour.body is not None
            else json.dumps(_error_body(behaviour.status, f"scripted HTTP {behaviour.status}"))
        )
        headers = (
            {} if behaviour.retry_after is None else {"Retry-After": f"{behaviour.retry_after:g}"}
        )
        self._send_bytes(behaviour.status, text.encode(), "application/json", headers)

    def _send_json(self, code: int, payload: dict[str, Any]) -> None:
        self._send_bytes(code, json.dumps(payload).encode(), "application/json", {})

    def _send_bytes(
        self, code: int, data: bytes, content_type: str, headers: dict[str, str]
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, reply: _Reply, body: dict[str, Any], cut_after: int | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        for sent, event in enumerate(reply.chunks(include_usage)):
            if cut_after is not None and sent >= cut_after:
                self.close_connection = True  # no terminating chunk: the body is incomplete
                return
            self._write_chunk(f"data: {json.dumps(event)}\n\n".encode())
        self._write_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


@dataclass(frozen=True)
class _Reply:
    """The assistant message a behaviour produces, as a completion or as stream chunks."""

    model: str
    content: str
    refusal: str | None
    finish_reason: str
    usage: dict[str, int] | None
    id: str = field(default_factory=lambda: f"chatcmpl-{time.monotonic_ns()}")
    created: int = field(default_factory=lambda: int(time.time()))

    @classmethod
    def build(cls, behaviour: Behaviour, body: dict[str, Any]) -> _Reply:
        messages = body.get("messages", [])
        content = behaviour.content
        if content is None:
            content = obedient_answer(messages)
        elif callable(content):
            content = content(messages)
        text = content if isinstance(content, str) else json.dumps(content)
        return cls(
            model=str(body.get("model", "fake")),
            content=text,
            refusal=behaviour.refusal,
            finish_reason=behaviour.finish_reason,
            usage=_usage(behaviour.usage, messages, text),
        )

    def _envelope(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def completion(self) -> dict[str, Any]:
        message = {"role": "assistant", "content": self.content or None, "refusal": self.refusal}
        choice = {"index": 0, "message": message, "finish_reason": self.finish_reason}
        payload = {**self._envelope("chat.completion"), "choices": [choice]}
        if self.usage is not None:
            payload["usage"] = self.usage
        return payload

    def chunks(self, include_usage: bool) -> Iterator[dict[str, Any]]:
        yield self._chunk({"role": "assistant", "content": ""})
        if self.refusal:
            yield self._chunk({"refusal": self.refusal})
        for start in range(0, len(self.content), STREAM_PIECE_CHARS):
            yield self._chunk({"content": self.content[start : start + STREAM_PIECE_CHARS]})
        yield self._chunk({}, finish_reason=self.finish_reason)
        if include_usage and self.usage is not None:
            yield {**self._envelope("chat.completion.chunk"), "choices": [], "usage": self.usage}

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return {**self._envelope("chat.completion.chunk"), "choices": [choice]}


def _usage(
    setting: bool | tuple[int, int], messages: list[dict[str, Any]], text: str
) -> dict[str, int] | None:
    if setting is False:
        return None
    if setting is True:
        chars = sum(len(str(m.get("content", ""))) for m in messages)
        setting = (math.ceil(chars / 4) + 3 * len(messages), math.ceil(len(text) / 4) + 1)
    prompt_tokens, completion_tokens = setting
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _error_body(code: int, message: str) -> dict[str, Any]:
    kind = "invalid_request_error" if code < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": str(code)}}


def _file_object(file_id: str, size: int, purpose: str) -> dict[str, Any]:
    return {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": int(time.time()),
        "filename": "questions.jsonl",
        "purpose": purpose,
        "status": "processed",
    }


def _batch_object(record: dict[str, Any]) -> dict[str, Any]:
    done = record["polls"] >= 2  # the create response and the first poll: in progress
    return {
        "id": record["id"],
        "object": "batch",
        "endpoint": record["request"]["endpoint"],
        "input_file_id": record["request"]["input_file_id"],
        "completion_window": record["request"]["completion_window"],
        "status": "completed" if done else "in_progress",
        "output_file_id": record["output_file_id"] if done else None,
        "error_file_id": None,
        "created_at": int(time.time()),
        "request_counts": {
            "total": record["total"],
            "completed": record["total"] if done else 0,
            "failed": 0,
        },
    }
