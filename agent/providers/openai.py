"""Chat completions from OpenAI or any server speaking its protocol (vLLM, llama.cpp, Ollama).

One retry layer: the SDK's own retries are off and ``OpenAIChatModel`` retries transient HTTP
failures itself, so every call is visible as an ``Attempt`` and retries never multiply.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import random
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import httpx
import openai
from pydantic import BaseModel, ValidationError

from agent.pipeline.prompt import prompt_render
from agent.pipeline.schema import AnswerOut, ClaimOut
from agent.providers.protocols import (
    Attempt,
    ChatRequest,
    ChatResult,
    StreamEvent,
    StreamHead,
    Usage,
)
from ragapp.errors import ProviderError

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletion

logger = logging.getLogger(__name__)

TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Keywords strict structured outputs reject; local validation still applies them.
UNSUPPORTED_SCHEMA_KEYWORDS = frozenset({"title", "default", "minLength", "maxLength"})
# Local servers (llama.cpp, vLLM, Ollama) ignore the key but the SDK insists on one.
PLACEHOLDER_API_KEY = "not-needed"
REPAIR_INSTRUCTION = (
    "Your previous reply is not valid for the required JSON schema: {error}\n"
    "Reply with the corrected JSON object only, no other text."
)
BATCH_FINAL_STATES = frozenset({"completed", "failed", "expired", "cancelled"})
# Reply problems retrying the same prompt at temperature 0 will not fix.
PERMANENT_REPLY_CODES = frozenset({"truncated", "refusal"})


def strict_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema in the form OpenAI's ``strict`` structured outputs accept.

    Every object gets ``additionalProperties: false`` and lists all its properties as required;
    keywords strict mode does not support are dropped.
    """
    return _strict(model.model_json_schema())  # type: ignore[no-any-return]


def _strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in UNSUPPORTED_SCHEMA_KEYWORDS:
            continue
        if key in ("properties", "$defs"):  # maps of names to schemas, not schemas themselves
            out[key] = {name: _strict(sub) for name, sub in value.items()}
        else:
            out[key] = _strict(value)
    if "properties" in out:
        out["additionalProperties"] = False
        out["required"] = list(out["properties"])
    return out


STRICT_ANSWER_SCHEMA = strict_json_schema(AnswerOut)
RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "answer", "schema": STRICT_ANSWER_SCHEMA, "strict": True},
}


def estimate_tokens(text: str) -> int:
    """A rough token count (about four characters a token) for servers that omit usage."""
    return math.ceil(len(text) / 4)


@dataclass(frozen=True)
class _Failure:
    """What one failed HTTP call means for the retry loop."""

    code: str
    permanent: bool
    retry_after_s: float | None = None


class _BadReply(Exception):
    """The server answered, but the reply is not a usable answer."""

    def __init__(self, code: str, detail: str, content: str = "") -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.content = content


@dataclass(frozen=True)
class _Limits:
    """The turn's limits as this model sees them: calls allowed and a monotonic deadline (and
    the prompt version's sampling temperature, which travels with them to every call)."""

    cap: int
    deadline: float = 0.0
    temperature: float = 0.0

    def left_s(self) -> float | None:
        return None if not self.deadline else self.deadline - time.monotonic()

    def clip(self, seconds: float) -> float:
        left = self.left_s()
        return seconds if left is None else max(0.0, min(seconds, left))


class _StreamFailure(Exception):
    def __init__(self, code: str, permanent: bool = False, retry_after_s: float | None = None):
        super().__init__(code)
        self.code = code
        self.permanent = permanent
        self.retry_after_s = retry_after_s


def _stream_failure(exc: BaseException) -> _StreamFailure:
    if isinstance(exc, openai.APIError):
        failure = _classify(exc)
        return _StreamFailure(failure.code, failure.permanent, failure.retry_after_s)
    if isinstance(exc, httpx.TimeoutException):
        return _StreamFailure("timeout")
    if isinstance(exc, httpx.HTTPError):  # the body broke off: RemoteProtocolError, ReadError
        return _StreamFailure("connection")
    return _StreamFailure("bad_response", permanent=True)


_END = object()


class _StreamReply:
    """What the chunks of one streamed reply add up to."""

    def __init__(self) -> None:
        self.content = ""
        self.refusal = ""
        self.finish_reason: str | None = None
        self.reported: Usage | None = None

    def add(self, chunk: Any) -> list[str]:
        """Fold one chunk in; returns the new content pieces."""
        if getattr(chunk, "usage", None) is not None:
            self.reported = Usage(
                input_tokens=chunk.usage.prompt_tokens or 0,
                output_tokens=chunk.usage.completion_tokens or 0,
            )
        pieces = []
        for choice in chunk.choices or []:
            delta = choice.delta
            if getattr(delta, "refusal", None):
                self.refusal += delta.refusal
            if delta.content:
                self.content += delta.content
                pieces.append(delta.content)
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
        return pieces

    def usage(self, messages: list[dict[str, str]]) -> Usage:
        if self.reported is not None:
            return self.reported
        return Usage(
            input_tokens=estimate_tokens("".join(m["content"] for m in messages)),
            output_tokens=estimate_tokens(self.content),
            estimated=True,
        )


_DECISION = re.compile(r'"decision"\s*:\s*"(\w+)"')
_CONFIDENCE = re.compile(r'"confidence"\s*:\s*(-?[0-9.eE+-]+)\s*[,}]')
_CLAIMS = re.compile(r'"claims"\s*:\s*\[')


class _ClaimScanner:
    """Finds the head and each complete claim object in a JSON answer arriving in pieces."""

    def __init__(self) -> None:
        self.buffer = ""
        self.head_sent = False
        self.position: int | None = None  # just after the last complete claim
        self.decoder = json.JSONDecoder()

    def feed(self, piece: str) -> Iterator[StreamHead | ClaimOut]:
        self.buffer += piece
        if not self.head_sent:
            decision, confidence = _DECISION.search(self.buffer), _CONFIDENCE.search(self.buffer)
            if decision and confidence:
                self.head_sent = True
                yield StreamHead(decision.group(1), float(confidence.group(1)))
        if self.position is None:
            found = _CLAIMS.search(self.buffer)
            if found is None:
                return
            self.position = found.end()
        while True:
            rest = self.buffer[self.position :]
            start = len(rest) - len(rest.lstrip(" \n\r\t,"))
            if not rest[start:] or rest[start] == "]":
                return
            try:
                value, end = self.decoder.raw_decode(rest, start)
            except json.JSONDecodeError:
                return  # not complete yet
            self.position += end
            try:
                yield ClaimOut.model_validate(value)
            except ValidationError:
                continue  # the final parse reports it


class OpenAIChatModel:
    """A ``ChatModel`` over the chat-completions API with strict JSON-schema output.

    Retries transient failures (429, 5xx, timeouts, dropped connections) up to ``max_attempts``
    HTTP calls with full-jitter exponential backoff, honouring ``Retry-After``; a reply that is not
    valid JSON for the schema gets one repair request.
    """

    provider = "openai"

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        timeout_s: float = 30.0,
        max_attempts: int = 3,
        api_key: str | None = None,
        connect_timeout_s: float = 5.0,
        first_token_timeout_s: float = 20.0,
        idle_timeout_s: float = 10.0,
        backoff_base_s: float = 0.5,
        max_backoff_s: float = 8.0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.model = model
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.connect_timeout_s = connect_timeout_s
        self.first_token_timeout_s = first_token_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.backoff_base_s = backoff_base_s
        self.max_backoff_s = max_backoff_s
        self._api_key = api_key

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIChatModel(model={self.model!r}, base_url={self.base_url!r})"

    @cached_property
    def _client(self) -> openai.OpenAI:
        return openai.OpenAI(
            api_key=self._resolve_api_key(),
            base_url=self.base_url,
            timeout=httpx.Timeout(
                self.timeout_s, connect=min(self.connect_timeout_s, self.timeout_s)
            ),
            max_retries=0,  # our loop in _complete is the only retry layer
        )

    def _resolve_api_key(self) -> str:
        if self._api_key:
            return self._api_key
        from django.conf import settings

        if settings.OPENAI_API_KEY:
            return str(settings.OPENAI_API_KEY)
        if self.base_url:
            return PLACEHOLDER_API_KEY
        raise ProviderError(
            "the openai chat model needs OPENAI_API_KEY or a base_url",
            permanent=True,
            code="not_configured",
        )

    def generate(self, request: ChatRequest) -> ChatResult:
        """Ask for a structured answer; raises ``ProviderError`` with ``extra["attempts"]``."""
        attempts: list[Attempt] = []
        key = request.idempotency_key or uuid.uuid4().hex
        messages = prompt_render(request)
        limits = self._limits(request)
        try:
            answer = self._ask(messages, key, attempts, limits)
        except _BadReply as bad:
            return self._repair(messages, key, bad, attempts, limits)
        except ProviderError as error:
            error.extra["attempts"] = attempts
            raise
        return ChatResult(
            answer=answer, provider=self.provider, model=self.model, attempts=attempts
        )

    def _limits(self, request: ChatRequest) -> _Limits:
        cap = self.max_attempts
        if request.max_attempts:
            cap = max(1, min(cap, request.max_attempts))
        return _Limits(cap=cap, deadline=request.deadline, temperature=request.prompt.temperature)

    def _timeout(self, limits: _Limits, read_s: float) -> httpx.Timeout:
        """Per-call timeouts, never past the turn's deadline."""
        left = limits.left_s()
        if left is not None and left <= 0:
            raise ProviderError(
                f"{self.model}: turn deadline passed", permanent=False, code="deadline"
            )
        cap = left if left is not None else read_s
        return httpx.Timeout(min(read_s, cap), connect=min(self.connect_timeout_s, read_s, cap))

    def _ask(
        self, messages: list[dict[str, str]], key: str, attempts: list[Attempt], limits: _Limits
    ) -> AnswerOut:
        """One logical request: the HTTP call with retries, then the reply checked and parsed."""
        completion, latency_ms = self._complete(messages, key, attempts, limits)
        usage = _usage(completion, messages)
        try:
            answer = _answer_parse(completion)
        except _BadReply as bad:
            attempts.append(self._attempt(latency_ms, usage, bad.code))
            raise
        attempts.append(self._attempt(latency_ms, usage))
        return answer

    def _complete(
        self, messages: list[dict[str, str]], key: str, attempts: list[Attempt], limits: _Limits
    ) -> tuple[ChatCompletion, int]:
        for number in range(1, limits.cap + 1):
            timeout = self._timeout(limits, self.timeout_s)
            started = time.monotonic()
            try:
                completion = self._client.chat.completions.create(
                    model=self.model,
                    messages=messages,  # type: ignore[arg-type]
                    response_format=RESPONSE_FORMAT,  # type: ignore[arg-type]
                    temperature=limits.temperature,
                    extra_headers={"Idempotency-Key": key},
                    timeout=timeout,
                )
                return completion, _ms_since(started)
            except openai.APIError as exc:
                failure = _classify(exc)
                attempts.append(self._attempt(_ms_since(started), Usage(), failure.code))
                if failure.permanent or number == limits.cap:
                    raise self._give_up(failure, number) from exc
                wait_s = limits.clip(self._wait_s(number, failure.retry_after_s))
                logger.warning(
                    "openai call failed, retrying",
                    extra={
                        "model": self.model,
                        "code": failure.code,
                        "attempt": number,
                        "wait_s": round(wait_s, 3),
                        "idempotency_key": key,
                    },
                )
                time.sleep(wait_s)
        raise AssertionError("unreachable: the loop returns or raises")

    # --- the batch lane -------------------------------------------------------------------------

    def generate_batch(
        self, requests: dict[str, ChatRequest], *, poll_s: float, timeout_s: float
    ) -> dict[str, ChatResult | ProviderError]:
        """Answer many requests through the Batch API: upload them as a JSONL file, create a
        batch, poll it every ``poll_s`` until it ends (at most ``timeout_s``), read its output.

        Returns each request's result, or its ``ProviderError`` (with ``extra["attempts"]``) for
        a line that failed or is missing; raises ``ProviderError`` when the batch itself fails.
        """
        started = time.monotonic()
        messages = {key: prompt_render(request) for key, request in requests.items()}
        lines = [
            json.dumps(
                {
                    "custom_id": key,
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {
                        "model": self.model,
                        "messages": rendered,
                        "response_format": RESPONSE_FORMAT,
                        "temperature": 0,
                    },
                }
            )
            for key, rendered in messages.items()
        ]
        try:
            upload = self._client.files.create(
                file=("questions.jsonl", "\n".join(lines).encode()), purpose="batch"
            )
            batch = self._client.batches.create(
                input_file_id=upload.id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
            )
            while batch.status not in BATCH_FINAL_STATES:
                if time.monotonic() - started > timeout_s:
                    raise ProviderError(
                        f"{self.model}: batch {batch.id} not done after {timeout_s:.0f} s",
                        permanent=False,
                        code="batch_timeout",
                        extra={"batch_id": batch.id},
                    )
                time.sleep(poll_s)
                batch = self._client.batches.retrieve(batch.id)
            if batch.status != "completed" or not batch.output_file_id:
                raise ProviderError(
                    f"{self.model}: batch {batch.id} ended {batch.status}",
                    permanent=False,
                    code=f"batch_{batch.status}",
                    extra={"batch_id": batch.id},
                )
            output = self._client.files.content(batch.output_file_id).text
        except openai.APIError as exc:
            failure = _classify(exc)
            raise self._give_up(failure, 1) from exc
        latency_ms = _ms_since(started)
        results: dict[str, ChatResult | ProviderError] = {}
        for line in output.splitlines():
            if line.strip():
                row = json.loads(line)
                key = row.get("custom_id", "")
                if key in messages:
                    results[key] = self._batch_result(row, messages[key], latency_ms)
        for key in requests.keys() - results.keys():
            results[key] = ProviderError(
                f"{self.model}: no batch output for {key}",
                permanent=False,
                code="batch_missing",
                extra={"attempts": []},
            )
        return results

    def _batch_result(
        self, row: dict[str, Any], messages: list[dict[str, str]], latency_ms: int
    ) -> ChatResult | ProviderError:
        from openai.types.chat import ChatCompletion

        response = row.get("response") or {}
        status = int(response.get("status_code") or 0)
        if status != 200:
            attempt = self._attempt(latency_ms, Usage(), f"http_{status}" if status else "error")
            return ProviderError(
                f"{self.model}: batch line failed ({attempt.error_code})",
                permanent=False,
                code=attempt.error_code,
                extra={"attempts": [attempt]},
            )
        completion = ChatCompletion.model_validate(response["body"])
        usage = _usage(completion, messages)
        try:
            answer = _answer_parse(completion)
        except _BadReply as bad:
            return self._unusable(bad, [self._attempt(latency_ms, usage, bad.code)])
        return ChatResult(
            answer=answer,
            provider=self.provider,
            model=self.model,
            attempts=[self._attempt(latency_ms, usage)],
        )

    # --- streaming ------------------------------------------------------------------------------

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        """Stream the reply: the head, then each claim as soon as its JSON object is complete.

        Failures before the first claim are retried like ``generate`` (and a malformed reply is
        repaired without streaming), except that a retry whose wait would end after the request's
        ``first_token_by`` is not made: ``ProviderError`` (``extra["cause"]`` is
        ``"first_token_budget"``) hands the turn to the next model at once. After the first claim,
        ``ProviderError(code="stream_cut")`` is raised and the caller keeps what it showed.
        Timeouts: connect, first token, idle gap, turn deadline.
        """
        attempts: list[Attempt] = []
        key = request.idempotency_key or uuid.uuid4().hex
        messages = prompt_render(request)
        limits = self._limits(request)
        shown = 0
        for number in range(1, limits.cap + 1):
            reply = _StreamReply()
            started = time.monotonic()
            try:
                for event in self._stream_once(messages, key, limits, reply):
                    shown += isinstance(event, ClaimOut)
                    yield event
                answer = _content_parse(reply.finish_reason, reply.content, reply.refusal)
            except ProviderError as error:  # the turn's deadline passed before this call
                error.extra["attempts"] = attempts
                raise
            except (_StreamFailure, _BadReply) as failure:
                usage = reply.usage(messages) if reply.content else Usage()
                attempts.append(self._attempt(_ms_since(started), usage, failure.code))
                if shown:
                    raise ProviderError(
                        f"{self.model}: the stream broke after {shown} claim(s): {failure.code}",
                        permanent=False,
                        code="stream_cut",
                        extra={"attempts": attempts, "cause": failure.code},
                    ) from failure
                if isinstance(failure, _BadReply):
                    yield self._repair(messages, key, failure, attempts, limits)
                    return
                if failure.permanent or number == limits.cap:
                    error = self._give_up(_Failure(failure.code, failure.permanent), number)
                    error.extra["attempts"] = attempts
                    raise error from failure
                wait_s = limits.clip(self._wait_s(number, failure.retry_after_s))
                if request.first_token_by and time.monotonic() + wait_s > request.first_token_by:
                    raise self._over_first_token_budget(failure.code, wait_s, attempts) from failure
                time.sleep(wait_s)
                continue
            attempts.append(self._attempt(_ms_since(started), reply.usage(messages)))
            yield ChatResult(
                answer=answer, provider=self.provider, model=self.model, attempts=attempts
            )
            return

    def _over_first_token_budget(
        self, code: str, wait_s: float, attempts: list[Attempt]
    ) -> ProviderError:
        """A streamed turn's user is waiting: rather than sleep past the first-token budget
        (e.g. a 429 with Retry-After: 5), give the turn to the next model of the chain now."""
        logger.warning(
            "openai stream retry would pass the first-token budget; falling back",
            extra={"model": self.model, "code": code, "wait_s": round(wait_s, 3)},
        )
        return ProviderError(
            f"{self.model}: {code}; waiting {wait_s:.1f} s would pass the first-token budget",
            permanent=False,
            code=code,
            extra={"attempts": attempts, "cause": "first_token_budget", "wait_s": wait_s},
        )

    def _unusable(self, bad: _BadReply, attempts: list[Attempt]) -> ProviderError:
        return ProviderError(
            f"{self.model} gave an unusable reply: {bad.code}",
            permanent=bad.code in PERMANENT_REPLY_CODES,
            code=bad.code,
            extra={"attempts": attempts},
        )

    def _repair(
        self,
        messages: list[dict[str, str]],
        key: str,
        bad: _BadReply,
        attempts: list[Attempt],
        limits: _Limits,
    ) -> ChatResult:
        """After an unusable reply: one repair request for malformed JSON, else give up."""
        if bad.code != "malformed_json":
            raise self._unusable(bad, attempts) from bad
        try:
            answer = self._ask(_repair_messages(messages, bad), f"{key}-repair", attempts, limits)
        except _BadReply as again:
            raise self._unusable(again, attempts) from again
        except ProviderError as error:
            error.extra["attempts"] = attempts
            raise
        return ChatResult(
            answer=answer, provider=self.provider, model=self.model, attempts=attempts
        )

    def _stream_once(
        self, messages: list[dict[str, str]], key: str, limits: _Limits, reply: _StreamReply
    ) -> Iterator[StreamHead | ClaimOut]:
        """One streamed HTTP call. A reader thread feeds a queue so the first-token and idle
        timeouts are exact whatever the socket does; on a timeout the response is closed."""
        read_s = max(self.first_token_timeout_s, self.idle_timeout_s) + 1.0  # a safety net only
        timeout = self._timeout(limits, read_s)
        items: queue.Queue[Any] = queue.Queue()
        opened: list[Any] = []

        def pump() -> None:
            try:
                stream = self._client.chat.completions.create(
                    model=self.model,
                    messages=messages,  # type: ignore[arg-type]
                    response_format=RESPONSE_FORMAT,  # type: ignore[arg-type]
                    temperature=limits.temperature,
                    stream=True,
                    stream_options={"include_usage": True},
                    extra_headers={"Idempotency-Key": key},
                    timeout=timeout,
                )
                opened.append(stream)
                for chunk in stream:
                    items.put(chunk)
                items.put(_END)
            except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread
                items.put(exc)

        threading.Thread(target=pump, daemon=True, name=f"stream-{key}").start()
        first_by = time.monotonic() + self.first_token_timeout_s
        scanner = _ClaimScanner()
        try:
            while True:
                waiting_first = not reply.content and not reply.refusal
                wait_s = (first_by - time.monotonic()) if waiting_first else self.idle_timeout_s
                wait_s = limits.clip(wait_s)
                try:
                    item = items.get(timeout=max(wait_s, 0.0))
                except queue.Empty:
                    if limits.left_s() is not None and limits.left_s() <= 0:  # type: ignore[operator]
                        raise _StreamFailure("deadline") from None
                    code = "first_token_timeout" if waiting_first else "idle_timeout"
                    raise _StreamFailure(code) from None
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise _stream_failure(item) from item
                for piece in reply.add(item):
                    yield from scanner.feed(piece)
        finally:
            for stream in opened:
                stream.close()

    def _wait_s(self, number: int, retry_after_s: float | None) -> float:
        """Seconds before attempt ``number + 1``: the server's Retry-After, else full jitter."""
        if retry_after_s is not None:
            return min(self.max_backoff_s, max(0.0, retry_after_s))
        return random.uniform(0.0, min(self.max_backoff_s, self.backoff_base_s * 2 ** (number - 1)))

    def _give_up(self, failure: _Failure, number: int) -> ProviderError:
        kind = "permanent error" if failure.permanent else f"gave up after {number} attempt(s)"
        return ProviderError(
            f"{self.model}: {failure.code} ({kind})", permanent=failure.permanent, code=failure.code
        )

    def _attempt(self, latency_ms: int, usage: Usage, error_code: str = "") -> Attempt:
        return Attempt(
            provider=self.provider,
            model=self.model,
            latency_ms=latency_ms,
            usage=usage,
            error_code=error_code,
        )


def _classify(exc: openai.APIError) -> _Failure:
    if isinstance(exc, openai.APITimeoutError):  # before its parent, APIConnectionError
        return _Failure("timeout", permanent=False)
    if isinstance(exc, openai.APIConnectionError):
        return _Failure("connection", permanent=False)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        transient = status in TRANSIENT_STATUSES
        retry_after = _retry_after_s(exc.response.headers) if transient else None
        return _Failure(f"http_{status}", permanent=not transient, retry_after_s=retry_after)
    return _Failure("bad_response", permanent=True)


def _retry_after_s(headers: httpx.Headers) -> float | None:
    """``retry-after-ms`` (OpenAI) or ``Retry-After`` in seconds; HTTP dates are ignored."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return float(value) * scale
        except ValueError:
            continue
    return None


def _answer_parse(completion: ChatCompletion) -> AnswerOut:
    if not completion.choices:
        raise _BadReply("empty", "the reply has no choices")
    choice = completion.choices[0]
    return _content_parse(choice.finish_reason, choice.message.content, choice.message.refusal)


def _content_parse(
    finish_reason: str | None, content: str | None, refusal: str | None
) -> AnswerOut:
    if refusal:
        raise _BadReply("refusal", refusal)
    if finish_reason == "length":
        raise _BadReply("truncated", "the reply hit the token limit", content or "")
    if not content or not content.strip():
        raise _BadReply("empty", "the reply has no content")
    try:
        return AnswerOut.model_validate_json(content)
    except ValidationError as exc:
        raise _BadReply("malformed_json", str(exc), content) from exc


def _repair_messages(messages: list[dict[str, str]], bad: _BadReply) -> list[dict[str, str]]:
    return [
        *messages,
        {"role": "assistant", "content": bad.content},
        {"role": "user", "content": REPAIR_INSTRUCTION.format(error=bad.detail[:2000])},
    ]


def _usage(completion: ChatCompletion, messages: list[dict[str, str]]) -> Usage:
    if completion.usage is not None:
        return Usage(
            input_tokens=completion.usage.prompt_tokens or 0,
            output_tokens=completion.usage.completion_tokens or 0,
        )
    content = (completion.choices[0].message.content or "") if completion.choices else ""
    return Usage(
        input_tokens=estimate_tokens("".join(m["content"] for m in messages)),
        output_tokens=estimate_tokens(content),
        estimated=True,
    )


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
