"""The search: study setup, strategies, budget, and the records a compile produces."""

from optimizer.records import CompileResult, TrialRecord

__all__ = ["CompileResult", "TrialRecord"]
