"""Experiment sweeps: a YAML matrix of compiles and DSPy optimizer baselines, run resumably on this machine
(``--workers N``) or a Ray cluster, with one MLflow run per cell under the sweep's parent run.

>>> output = run_sweep("experiments/sweeps/quickstart.yaml")
>>> write_report(output)
"""

from optimizer.sweep.config import CellSettings, SweepConfigError, SweepFile, load_sweep
from optimizer.sweep.report import write_report
from optimizer.sweep.run import run_sweep

__all__ = ["CellSettings", "SweepConfigError", "SweepFile", "load_sweep", "run_sweep", "write_report"]
