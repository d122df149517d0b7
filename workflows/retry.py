"""Every retry policy of the workflows, and which errors are bugs (never retried), in one place.

Storage steps retry until the dependency is back (nothing acknowledged is lost); model steps
have a bounded number of tries, after which the caller keeps the memory without a decision;
programming errors fail at once, visibly (a failed workflow an operator resets after the fix).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

# Programming errors fail the workflow at once (visible as a failed ingestion, resettable
# after a fix) instead of retrying forever; the memory row stays, searchable, meanwhile.
BUG_ERRORS = ["ValidationError", "TypeError", "AttributeError", "NameError", "KeyError"]
# A reply the model got wrong in a way retrying the same request will not fix.
MODEL_ERRORS = ["MalformedLLMOutput", *BUG_ERRORS]

# Database steps: retry until the dependency is back.
STORAGE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    non_retryable_error_types=BUG_ERRORS,
)


def _model_retry(maximum_interval: timedelta, maximum_attempts: int) -> RetryPolicy:
    """A step that asks the model: a bounded number of tries, none for a reply it got wrong."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=maximum_interval,
        maximum_attempts=maximum_attempts,
        non_retryable_error_types=MODEL_ERRORS,
    )


# The LLM decision of an ingestion or a consolidation.
DECISION_RETRY = _model_retry(timedelta(seconds=30), maximum_attempts=5)
# The distillation of a captured session: longer, since nothing waits on it.
DISTILL_RETRY = _model_retry(timedelta(minutes=1), maximum_attempts=8)

# A local activity's last failure arrives as the activity's own ApplicationError (or a
# TimeoutError), not wrapped in an ActivityError as a regular activity's would be; one whose
# last retry carried a next_retry_delay (Retry-After) arrives bare too (temporalio 1.35).
LOCAL_STEP_FAILED = (ActivityError, ApplicationError, TimeoutError)


def failure_cause(error: BaseException) -> BaseException:
    return (error.cause or error) if isinstance(error, ActivityError) else error
