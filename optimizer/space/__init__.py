"""The search space: variants (one choice per step), candidate pools, and building runnable programs."""

from optimizer.space.build import ConfiguredPredict, baseline_steps, build_program
from optimizer.space.variant import SearchSpace, StepChoice, StepConfig, StepSpace, Variant, strategy_settings

__all__ = ["ConfiguredPredict", "SearchSpace", "StepChoice", "StepConfig", "StepSpace", "Variant",
           "baseline_steps", "build_program", "strategy_settings"]
