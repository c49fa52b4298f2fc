"""Chat completions from OpenAI or any server speaking its protocol (vLLM, llama.cpp, Ollama).

One retry layer: the SDK's own retries are off and ``OpenAIChatModel`` retries transient HTTP
failures itself, so every call is visible as an ``Attempt`` and retries never multiply.
"""

from __future__ import annotations

import logging
import math
import random
import time
import uuid
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import httpx
import openai
from pydantic import BaseModel, ValidationError

from agent.pipeline.prompt import prompt_render
from agent.pipeline.schema import AnswerOut
from agent.providers.protocols import Attempt, ChatRequest, ChatResult, Usage
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
        try:
            try:
                answer = self._ask(messages, key, attempts)
            except _BadReply as bad:
                if bad.code != "malformed_json":
                    raise
                answer = self._ask(_repair_messages(messages, bad), f"{key}-repair", attempts)
        except _BadReply as bad:
            raise ProviderError(
                f"{self.model} gave an unusable reply: {bad.code}",
                permanent=bad.code in PERMANENT_REPLY_CODES,
                code=bad.code,
                extra={"attempts": attempts},
            ) from bad
        except ProviderError as error:
            error.extra["attempts"] = attempts
            raise
        return ChatResult(
            answer=answer, provider=self.provider, model=self.model, attempts=attempts
        )

    def _ask(self, messages: list[dict[str, str]], key: str, attempts: list[Attempt]) -> AnswerOut:
        """One logical request: the HTTP call with retries, then the reply checked and parsed."""
        completion, latency_ms = self._complete(messages, key, attempts)
        usage = _usage(completion, messages)
        try:
            answer = _answer_parse(completion)
        except _BadReply as bad:
            attempts.append(self._attempt(latency_ms, usage, bad.code))
            raise
        attempts.append(self._attempt(latency_ms, usage))
        return answer

    def _complete(
        self, messages: list[dict[str, str]], key: str, attempts: list[Attempt]
    ) -> tuple[ChatCompletion, int]:
        for number in range(1, self.max_attempts + 1):
            started = time.monotonic()
            try:
                completion = self._client.chat.completions.create(
                    model=self.model,
                    messages=messages,  # type: ignore[arg-type]
                    response_format=RESPONSE_FORMAT,  # type: ignore[arg-type]
                    temperature=0,
                    extra_headers={"Idempotency-Key": key},
                )
                return completion, _ms_since(started)
            except openai.APIError as exc:
                failure = _classify(exc)
                attempts.append(self._attempt(_ms_since(started), Usage(), failure.code))
                if failure.permanent or number == self.max_attempts:
                    raise self._give_up(failure, number) from exc
                wait_s = self._wait_s(number, failure.retry_after_s)
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
    if choice.message.refusal:
        raise _BadReply("refusal", choice.message.refusal)
    if choice.finish_reason == "length":
        raise _BadReply("truncated", "the reply hit the token limit", choice.message.content or "")
    content = choice.message.content
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
