"""The transport to Claude that every LLM task goes through, and its error taxonomy.

A task (ingest.py, consolidate.py, manifesto.py, observe.py) hands ``Distiller.ask`` its system
prompt, user prompt, forced tool and reply parser. The reply is the tool's JSON input; the
task validates it against the ids it showed the model. Failures surface as ``LLMUnavailable``
(transport; ``retryable`` tells Temporal whether to try again) or ``MalformedLLMOutput`` (the
model answered, but not usably; never retryable). Temporal owns retries: the SDK makes one
attempt per call, so every attempt is visible in the workflow's history.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import anthropic
from anthropic.types import Message, ToolParam, ToolUseBlock
from opentelemetry.trace import Span
from pydantic import BaseModel, ConfigDict

from team_memory_core import telemetry

if TYPE_CHECKING:
    from team_memory_core.settings import Settings

__all__ = ["Distiller", "LLMError", "LLMUnavailable", "LLMUsage", "MalformedLLMOutput"]

_RETRYABLE_STATUS = frozenset({408, 409, 429})

T = TypeVar("T")


class LLMUsage(BaseModel):
    """The tokens one call was billed, and by which model."""

    model_config = ConfigDict(frozen=True)

    model: str
    input_tokens: int
    output_tokens: int


class LLMError(Exception):
    """Base of the errors a Distiller call raises; ``retryable`` is for Temporal."""

    retryable: bool = False


class LLMUnavailable(LLMError):
    """The API could not be reached or refused the request (rate limit, overload, auth...)."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status_code: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after_s = retry_after_s


class MalformedLLMOutput(LLMError):
    """The model answered, but not with a valid tool call; ``usage`` is set when it was billed."""

    retryable = False

    def __init__(self, message: str, *, usage: LLMUsage | None = None) -> None:
        super().__init__(message)
        self.usage = usage


class Distiller:
    """The Claude client of the LLM tasks: one forced tool call per judgment."""

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        base_url: str | None = None,
        timeout_s: float = 30.0,
        max_content_chars: int = 8000,
    ) -> None:
        self.model = model
        # The longest memory text a reply may write (merged content), as for a saved memory.
        self.max_content_chars = max_content_chars
        # Temporal owns retries and backoff; SDK retries would hide attempts from its history.
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Distiller | None:
        if settings.anthropic_api_key is None:
            return None
        return cls(
            api_key=settings.anthropic_api_key.get_secret_value(),
            model=settings.llm_model,
            base_url=settings.anthropic_base_url,
            timeout_s=settings.llm_timeout_s,
            max_content_chars=settings.max_content_chars,
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def no_usage(self) -> LLMUsage:
        """The usage of a judgment made without a call (nothing to compare, nothing to plan)."""
        return LLMUsage(model=self.model, input_tokens=0, output_tokens=0)

    async def ask(
        self,
        system: str,
        prompt: str,
        tool: ToolParam,
        parse: Callable[[dict[str, Any]], T],
        *,
        max_tokens: int,
    ) -> tuple[T, LLMUsage]:
        """One call forcing ``tool``; ``parse`` turns its input into the task's result."""
        with telemetry.span(f"chat {self.model}", **{
            "gen_ai.system": "anthropic", "gen_ai.operation.name": "chat",
            "gen_ai.request.model": self.model, "gen_ai.tool.name": tool["name"],
        }) as span:
            message = await self._send(system, prompt, tool, max_tokens)
            usage = LLMUsage(
                model=message.model or self.model,
                input_tokens=message.usage.input_tokens,
                output_tokens=message.usage.output_tokens,
            )
            _record_usage(span, usage)
            try:
                return parse(_tool_input(message, tool["name"])), usage
            except MalformedLLMOutput as exc:
                exc.usage = usage
                raise

    async def _send(self, system: str, prompt: str, tool: ToolParam, max_tokens: int) -> Message:
        try:
            return await self._client.messages.create(
                model=self.model,
                max_tokens=max_tokens,
                system=system,
                messages=[{"role": "user", "content": prompt}],
                tools=[tool],
                tool_choice={"type": "tool", "name": tool["name"]},
            )
        except anthropic.APIStatusError as exc:
            raise _status_error(exc) from exc
        except anthropic.APIConnectionError as exc:
            # APITimeoutError is a subclass: both are worth another attempt.
            raise LLMUnavailable(f"Anthropic API unreachable: {exc}", retryable=True) from exc


def _tool_input(message: Message, tool_name: str) -> dict[str, Any]:
    if message.stop_reason == "max_tokens":
        # A cut-off tool call may still parse, e.g. with merged_content truncated mid-sentence.
        raise MalformedLLMOutput("the reply was cut off at max_tokens")
    for block in message.content:
        if isinstance(block, ToolUseBlock) and block.name == tool_name:
            return block.input
    raise MalformedLLMOutput(
        f"no {tool_name} tool_use block in the reply (stop_reason={message.stop_reason})"
    )


def _retry_after(exc: anthropic.APIStatusError) -> float | None:
    try:
        return float(exc.response.headers.get("retry-after", ""))
    except ValueError:
        return None


def _status_error(exc: anthropic.APIStatusError) -> LLMUnavailable:
    status = exc.status_code
    detail = exc.api_message or exc.message
    return LLMUnavailable(
        f"Anthropic API answered {status} ({exc.type or 'error'}): {detail}",
        retryable=status in _RETRYABLE_STATUS or status >= 500,
        status_code=status,
        retry_after_s=_retry_after(exc),
    )


def _record_usage(span: Span, usage: LLMUsage) -> None:
    span.set_attributes({
        "gen_ai.response.model": usage.model,
        "gen_ai.usage.input_tokens": usage.input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
    })
    for direction, tokens in (("input", usage.input_tokens), ("output", usage.output_tokens)):
        telemetry.llm_tokens.add(tokens, {"model": usage.model, "direction": direction})
