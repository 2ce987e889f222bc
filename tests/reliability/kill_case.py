"""A real compile run as a child process by tests/reliability/test_kills.py, which SIGKILLs it at a random
point and runs it again: the space build bootstraps demos, trials are promoted, the top two are re-scored
(the final selection), a test report follows, and an MLflow tracker records the runs.

``python -m tests.reliability.kill_case STORAGE CACHE_DIR CALL_LOG RESULT_JSON BUDGET TRACKING_URI``. Every
call that reaches a model is appended (request digest) to CALL_LOG once it completes."""

from __future__ import annotations

import sys
from pathlib import Path

from optimizer import runtime
from optimizer.models import ModelPool
from optimizer.models.replay import request_digest
from optimizer.models.retry import ResilientLlamaEngine
from optimizer.search.compile import Budget, SearchSettings, SpaceSettings, compile
from optimizer.tracking import MlflowTracker
from programs.sentiment import TASK, Sentiment, metric

STUDY = "kill-case"
FINAL_SHARE = 0.5  # the search spends half the calls, the final selection of the top 2 the rest


class LoggingEngine(ResilientLlamaEngine):
    """The real engine (with its timeout and retries), appending each completed call's digest to a file."""

    log: Path

    def complete(self, request):  # noqa: ANN001, ANN201 - same signature as the engine's
        response = super().complete(request)
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(request_digest(request) + "\n")
        return response


def main(storage: str, cache: str, log: str, out: str, budget: str, tracking_uri: str) -> None:
    runtime.configure(cache)
    LoggingEngine.log = Path(log)
    pool = ModelPool(ModelPool.default().specs.values(), engine_for=LoggingEngine)
    tracker = MlflowTracker(tracking_uri=tracking_uri, experiment="kills", log_model=False)
    # 8 of the 30 validation examples score promoted variants; the other 22 are the final selection's holdout
    result = compile(Sentiment(), trainset=TASK.load("train", limit=12), valset=TASK.load("val", limit=30),
                     testset=TASK.load("test", limit=4), metric=metric, models=pool, budget=Budget(calls=int(budget)),
                     search=SearchSettings(minibatch=4, seed=7, final_top=2, final_share=FINAL_SHARE, validation=8),
                     space=SpaceSettings(formats=("json",), proposer=None, teacher="first", strategies=("direct",),
                                         label_words=(), demo_draws=1),
                     storage=storage, study_name=STUDY, observer=tracker, show_progress=False)
    Path(out).write_text(result.model_dump_json(), encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:7])
