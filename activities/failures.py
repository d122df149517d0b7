"""The one mapping of LLM errors to Temporal failures, for every activity that calls the model.

The retry policy of the calling workflow decides how often; this decides whether (the error's
``retryable``) and, for a rate limit or overload that says so, when (its Retry-After).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.exceptions import ApplicationError

from team_memory_core.llm.client import LLMError, LLMUnavailable, MalformedLLMOutput

# Longest wait taken from a Retry-After header: a longer hint waits this long.
MAX_RETRY_AFTER = timedelta(seconds=60)


def llm_failure(error: LLMError) -> ApplicationError:
    """A Distiller error as Temporal sees it: its type, whether to retry, and when.

    The API's Retry-After hint becomes the next retry delay; tokens billed for a malformed
    reply travel in the details so the workflow can count them.
    """
    if isinstance(error, LLMUnavailable):
        delay = None
        if error.retryable and error.retry_after_s is not None:
            delay = min(timedelta(seconds=max(0.0, error.retry_after_s)), MAX_RETRY_AFTER)
        return ApplicationError(str(error), type="LLMUnavailable",
                                non_retryable=not error.retryable, next_retry_delay=delay)
    usage = error.usage if isinstance(error, MalformedLLMOutput) else None
    spent = usage.model_dump() if usage is not None else {}
    return ApplicationError(str(error), spent, type=type(error).__name__, non_retryable=True)
