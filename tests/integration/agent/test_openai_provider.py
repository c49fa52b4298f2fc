"""OpenAIChatModel against a real loopback server speaking the chat-completions protocol."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from agent.pipeline.prompt import prompt_load, prompt_render
from agent.pipeline.schema import AnswerOut
from agent.providers.openai import STRICT_ANSWER_SCHEMA, OpenAIChatModel
from agent.providers.protocols import ChatRequest, Passage
from ragapp.errors import ProviderError
from tests.support.openai_server import (
    FakeOpenAIServer,
    cut_stream,
    delay,
    empty,
    finish_length,
    hang_up,
    malformed,
    no_usage,
    ok,
    refusal,
    status,
)

pytestmark = pytest.mark.integration

MODEL = "gpt-test"
ANSWER = {
    "decision": "answer",
    "confidence": 0.8,
    "claims": [{"text": "Reset the router by holding the button.", "passages": [1]}],
}


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as running:
        yield running


def make_model(server: FakeOpenAIServer, **overrides: Any) -> OpenAIChatModel:
    options: dict[str, Any] = {
        "model": MODEL,
        "base_url": server.url,
        "api_key": "sk-test",
        "timeout_s": 2.0,
        "max_attempts": 3,
        "backoff_base_s": 0.01,
        "max_backoff_s": 1.0,
    }
    return OpenAIChatModel(**{**options, **overrides})


def make_request(idempotency_key: str = "req-1") -> ChatRequest:
    passages = [
        Passage(1, 11, "Hold the reset button for ten seconds.", "Router guide", 3, "Reset", 0.9),
        Passage(2, 12, "The warranty lasts two years.", "Warranty", None, "", 0.4),
    ]
    return ChatRequest(
        question="How do I reset the router?",
        passages=passages,
        prompt=prompt_load("grounded_answer@1"),
        idempotency_key=idempotency_key,
    )


def error_codes(attempts: list[Any]) -> list[str]:
    return [attempt.error_code for attempt in attempts]


def generate_error(model: OpenAIChatModel, request: ChatRequest | None = None) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        model.generate(request or make_request())
    return caught.value


# --- success and usage ----------------------------------------------------------------------------


def test_a_valid_reply_becomes_the_answer_with_the_servers_usage(server: FakeOpenAIServer) -> None:
    server.script(ok(ANSWER, usage=(321, 45)))

    result = make_model(server).generate(make_request())

    assert result.answer == AnswerOut.model_validate(ANSWER)
    assert (result.provider, result.model) == ("openai", MODEL)
    [attempt] = result.attempts
    assert (attempt.provider, attempt.model, attempt.error_code) == ("openai", MODEL, "")
    assert (attempt.usage.input_tokens, attempt.usage.output_tokens) == (321, 45)
    assert attempt.usage.estimated is False
    assert len(server.requests) == 1


def test_the_request_carries_the_rendered_prompt_strict_schema_and_zero_temperature(
    server: FakeOpenAIServer,
) -> None:
    request = make_request()

    make_model(server).generate(request)

    [sent] = server.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.body["model"] == MODEL
    assert sent.body["messages"] == prompt_render(request)
    assert sent.body["temperature"] == 0
    assert sent.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": STRICT_ANSWER_SCHEMA, "strict": True},
    }
    assert "stream" not in sent.body


def test_the_strict_schema_closes_every_object_and_requires_every_property() -> None:
    claim = STRICT_ANSWER_SCHEMA["$defs"]["ClaimOut"]
    for schema in (STRICT_ANSWER_SCHEMA, claim):
        assert schema["additionalProperties"] is False
        assert schema["required"] == list(schema["properties"])
    assert "minLength" not in claim["properties"]["text"]
    assert "title" not in json.dumps(STRICT_ANSWER_SCHEMA).replace('"text"', "")


def test_usage_is_estimated_from_characters_when_the_server_omits_it(
    server: FakeOpenAIServer,
) -> None:
    server.script(no_usage(ANSWER))
    request = make_request()

    result = make_model(server).generate(request)

    [attempt] = result.attempts
    prompt_chars = sum(len(m["content"]) for m in prompt_render(request))
    assert attempt.usage.estimated is True
    assert attempt.usage.input_tokens == math.ceil(prompt_chars / 4)
    assert attempt.usage.output_tokens == math.ceil(len(json.dumps(ANSWER)) / 4)


def test_without_a_configured_key_a_local_server_gets_a_placeholder_key(
    server: FakeOpenAIServer, settings: Any
) -> None:
    settings.OPENAI_API_KEY = ""

    make_model(server, api_key=None).generate(make_request())

    assert server.requests[0].headers["authorization"] == "Bearer not-needed"


# --- transient failures are retried ---------------------------------------------------------------


def test_a_429_with_retry_after_is_retried_after_the_advertised_wait(
    server: FakeOpenAIServer,
) -> None:
    server.script(status(429, retry_after=0.3), ok(ANSWER))

    result = make_model(server, backoff_base_s=0.001).generate(make_request())

    assert result.answer.decision == "answer"
    assert error_codes(result.attempts) == ["http_429", ""]
    first, second = server.requests
    waited = second.received_at - first.received_at
    assert 0.28 <= waited < 0.8  # the backoff alone would wait at most 1 ms


def test_a_500_then_a_503_then_success_takes_three_requests(server: FakeOpenAIServer) -> None:
    server.script(status(500), status(503), ok(ANSWER, usage=(10, 5)))

    result = make_model(server).generate(make_request())

    assert result.answer == AnswerOut.model_validate(ANSWER)
    assert error_codes(result.attempts) == ["http_500", "http_503", ""]
    assert [a.usage.input_tokens for a in result.attempts] == [0, 0, 10]
    assert len(server.requests) == 3


def test_a_persistent_503_gives_up_after_max_attempts_as_a_transient_error(
    server: FakeOpenAIServer,
) -> None:
    server.default = status(503)

    error = generate_error(make_model(server, max_attempts=3))

    assert (error.code, error.permanent) == ("http_503", False)
    assert error_codes(error.extra["attempts"]) == ["http_503"] * 3
    assert len(server.requests) == 3


def test_a_read_timeout_is_retried(server: FakeOpenAIServer) -> None:
    server.script(delay(1.5, ANSWER), ok(ANSWER))

    result = make_model(server, timeout_s=0.3).generate(make_request())

    assert result.answer.decision == "answer"
    assert error_codes(result.attempts) == ["timeout", ""]
    assert result.attempts[0].latency_ms >= 250
    assert len(server.requests) == 2


def test_a_connection_hang_up_is_retried(server: FakeOpenAIServer) -> None:
    server.script(hang_up(), ok(ANSWER))

    result = make_model(server).generate(make_request())

    assert result.answer.decision == "answer"
    assert error_codes(result.attempts) == ["connection", ""]
    assert len(server.requests) == 2


def test_every_retry_of_one_request_sends_the_same_idempotency_key(
    server: FakeOpenAIServer,
) -> None:
    server.script(status(500), hang_up(), ok(ANSWER))

    make_model(server).generate(make_request(idempotency_key="req-42"))

    assert [r.idempotency_key for r in server.requests] == ["req-42"] * 3


def test_a_request_without_a_key_gets_one_generated_and_shared_by_its_retries(
    server: FakeOpenAIServer,
) -> None:
    server.script(status(502), ok(ANSWER))

    make_model(server).generate(make_request(idempotency_key=""))

    first, second = (r.idempotency_key for r in server.requests)
    assert first and first == second


def test_the_sdks_own_retries_are_off_so_one_attempt_is_one_request(
    server: FakeOpenAIServer,
) -> None:
    server.default = status(500)

    error = generate_error(make_model(server, max_attempts=1))

    assert (error.code, error.permanent) == ("http_500", False)
    assert len(error.extra["attempts"]) == 1
    assert len(server.requests) == 1


# --- permanent failures are not retried -----------------------------------------------------------


@pytest.mark.parametrize("code", [400, 401, 403, 404, 422])
def test_a_client_error_status_is_permanent_and_sent_once(
    server: FakeOpenAIServer, code: int
) -> None:
    server.default = status(code)

    error = generate_error(make_model(server))

    assert (error.code, error.permanent) == (f"http_{code}", True)
    assert error_codes(error.extra["attempts"]) == [f"http_{code}"]
    assert len(server.requests) == 1


# --- unusable replies -----------------------------------------------------------------------------


def test_malformed_json_gets_one_repair_request_then_succeeds(server: FakeOpenAIServer) -> None:
    server.script(malformed("{not json"), ok(ANSWER, usage=(50, 20)))

    result = make_model(server).generate(make_request(idempotency_key="req-7"))

    assert result.answer == AnswerOut.model_validate(ANSWER)
    assert error_codes(result.attempts) == ["malformed_json", ""]
    assert result.attempts[1].usage.input_tokens == 50
    first, repair = server.requests
    assert repair.messages[:2] == first.messages
    assert repair.messages[2] == {"role": "assistant", "content": "{not json"}
    assert repair.messages[3]["role"] == "user"
    assert "Invalid JSON" in repair.messages[3]["content"]
    assert repair.idempotency_key == "req-7-repair"


def test_a_reply_that_breaks_the_schema_is_repaired_like_broken_json(
    server: FakeOpenAIServer,
) -> None:
    server.script(ok({"decision": "maybe", "confidence": 2, "claims": []}), ok(ANSWER))

    result = make_model(server).generate(make_request())

    assert result.answer.decision == "answer"
    assert error_codes(result.attempts) == ["malformed_json", ""]
    assert "decision" in server.requests[1].messages[3]["content"]


def test_malformed_json_twice_is_a_transient_malformed_json_error(
    server: FakeOpenAIServer,
) -> None:
    server.script(malformed("{not json"), malformed("still [not json"))

    error = generate_error(make_model(server))

    assert (error.code, error.permanent) == ("malformed_json", False)
    assert error_codes(error.extra["attempts"]) == ["malformed_json", "malformed_json"]
    assert len(server.requests) == 2


def test_a_reply_cut_by_the_token_limit_is_truncated_and_not_repaired(
    server: FakeOpenAIServer,
) -> None:
    server.script(finish_length())

    error = generate_error(make_model(server))

    assert (error.code, error.permanent) == ("truncated", True)
    [attempt] = error.extra["attempts"]
    assert attempt.error_code == "truncated"
    assert attempt.usage.output_tokens > 0
    assert len(server.requests) == 1


def test_a_reply_without_content_is_empty(server: FakeOpenAIServer) -> None:
    server.script(empty())

    error = generate_error(make_model(server))

    assert (error.code, error.permanent) == ("empty", False)
    assert error_codes(error.extra["attempts"]) == ["empty"]
    assert len(server.requests) == 1


def test_a_model_refusal_is_a_permanent_refusal(server: FakeOpenAIServer) -> None:
    server.script(refusal("I can't"))

    error = generate_error(make_model(server))

    assert (error.code, error.permanent) == ("refusal", True)
    assert error_codes(error.extra["attempts"]) == ["refusal"]
    assert len(server.requests) == 1


# --- the loopback server itself: streaming, for the provider's next step -------------------------


def open_stream(server: FakeOpenAIServer) -> Iterator[Any]:
    client = openai.OpenAI(api_key="sk-test", base_url=server.url, max_retries=0, timeout=2.0)
    return iter(
        client.chat.completions.create(
            model=MODEL,
            messages=prompt_render(make_request()),  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )


def test_the_server_streams_the_obedient_answer_as_sse_chunks(server: FakeOpenAIServer) -> None:
    chunks = list(open_stream(server))

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    answer = AnswerOut.model_validate_json(text)
    assert answer.decision == "answer"
    assert answer.claims[0].text == "Hold the reset button for ten seconds."
    assert answer.claims[0].passages == [1]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_a_cut_stream_delivers_its_first_chunks_then_fails_mid_body(
    server: FakeOpenAIServer,
) -> None:
    server.script(cut_stream(after_chunks=2))
    stream = open_stream(server)

    received = [next(stream), next(stream)]

    # The SDK does not wrap errors raised while iterating: a streaming caller must catch httpx's.
    with pytest.raises(httpx.RemoteProtocolError):
        next(stream)
    assert received[0].choices[0].delta.role == "assistant"
