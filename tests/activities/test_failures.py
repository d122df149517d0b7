"""How Distiller errors reach Temporal: type, retryability, the Retry-After hint, tokens."""

from __future__ import annotations

from datetime import timedelta

from activities.failures import MAX_RETRY_AFTER, llm_failure
from team_memory_core.llm.client import LLMUnavailable, LLMUsage, MalformedLLMOutput


def test_rate_limit_retries_after_the_hint() -> None:
    error = llm_failure(LLMUnavailable("429", retryable=True, status_code=429,
                                       retry_after_s=2.5))
    assert (error.type, error.non_retryable) == ("LLMUnavailable", False)
    assert error.next_retry_delay == timedelta(seconds=2.5)


def test_a_huge_hint_is_capped_and_no_hint_leaves_the_backoff() -> None:
    capped = llm_failure(LLMUnavailable("529", retryable=True, retry_after_s=86_400))
    assert capped.next_retry_delay == MAX_RETRY_AFTER
    assert llm_failure(LLMUnavailable("503", retryable=True)).next_retry_delay is None


def test_auth_failure_is_not_retried() -> None:
    error = llm_failure(LLMUnavailable("401", retryable=False, status_code=401,
                                       retry_after_s=1))
    assert error.non_retryable and error.next_retry_delay is None


def test_malformed_reply_carries_its_tokens() -> None:
    usage = LLMUsage(model="claude-haiku-4-5", input_tokens=120, output_tokens=9)
    error = llm_failure(MalformedLLMOutput("no tool call", usage=usage))
    assert (error.type, error.non_retryable) == ("MalformedLLMOutput", True)
    assert error.details[0]["input_tokens"] == 120
