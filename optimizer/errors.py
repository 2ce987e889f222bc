"""Typed errors that carry their evidence."""

from __future__ import annotations


class ProgoptError(Exception):
    """Base class for progopt errors."""


class TruncatedOutput(ProgoptError):
    """A generation hit its token limit before the structured output was complete."""

    def __init__(self, model: str, step: str | None, raw: str | None, finish_reason: str = "length"):
        self.model, self.step, self.raw, self.finish_reason = model, step, raw, finish_reason
        super().__init__(f"{model} (step {step}) stopped at its token limit; raw output: {(raw or '')[:200]!r}")


class InvalidOutput(ProgoptError):
    """The model's output did not parse into the signature's typed fields."""

    def __init__(self, model: str | None, step: str | None, raw: str | None, reason: str):
        self.model, self.step, self.raw, self.reason = model, step, raw, reason
        super().__init__(f"{model} (step {step}) gave an invalid output ({reason}); raw: {(raw or '')[:200]!r}")


class UsageError(ProgoptError, ValueError):
    """A command-line argument or a file it names that cannot be used: ``what`` is wrong, ``where`` (an
    option and its value, or a path)."""

    def __init__(self, what: str, where: str):
        self.what, self.where = what, where
        super().__init__(f"{what}, {where}")


class CallFailed(ProgoptError):
    """A model call raised (after its retries): the example has no output to parse."""

    def __init__(self, model: str | None, step: str | None, error: str):
        self.model, self.step, self.error = model, step, error
        super().__init__(f"{model} (step {step}) call failed: {error[:300]}")
