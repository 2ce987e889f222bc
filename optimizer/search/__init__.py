"""The search of a compile.

``compile.py`` holds :func:`~optimizer.search.compile.compile`, the entry point, and ``settings.py`` the value
objects it takes. ``space_builder.py`` builds the search space once, from ``candidates.py`` (instructions, demo
sets) and ``retrieval.py`` (retrieved-demo candidates). ``session.py`` runs the trials against one Optuna study:
``storage.py`` is its storage and heartbeat, ``study_store.py`` its keys, ``samplers.py`` picks the next
variant, ``calibrate.py`` sets label-scoring priors, and ``selection.py`` makes the final selection.

The records a compile produces (:class:`TrialRecord`, :class:`CompileResult`) live in :mod:`optimizer.records`
and are re-exported here."""

from optimizer.records import CompileResult, TrialRecord

__all__ = ["CompileResult", "TrialRecord"]
