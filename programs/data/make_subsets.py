"""Regenerate the dataset subsets shipped with progopt from ../shared/datasets.

Run from the repository root: ``python programs/data/make_subsets.py [--shared ../shared/datasets]``.
Selection is ``random.Random(SEED).sample`` over each source split; train/val are disjoint samples of
one source split. The seed and counts are recorded in ``programs/data/SUBSETS.md``.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SEED = 2026
# task -> output split -> (source split file, rows, offset into the shuffled order)
PLAN: dict[str, dict[str, tuple[str, int, int]]] = {
    "sst2": {"train": ("validation.jsonl", 200, 0), "val": ("validation.jsonl", 200, 200),
             "test": ("test.jsonl", 300, 0)},
    "ag_news": {"train": ("train_subset.jsonl", 200, 0), "val": ("train_subset.jsonl", 200, 200),
                "test": ("test.jsonl", 300, 0)},
    "trec": {"train": ("train.jsonl", 300, 0), "val": ("train.jsonl", 200, 300),
             "test": ("test.jsonl", 300, 0)},
    "conll2003": {"train": ("train.jsonl", 200, 0), "val": ("validation.jsonl", 100, 0),
                  "test": ("test.jsonl", 300, 0)},
}
KEEP = {  # fields copied per task (the rest of the source row is dropped)
    "sst2": ["idx", "sentence", "label"],
    "ag_news": ["text", "label"],
    "trec": ["question", "coarse", "fine"],
    "conll2003": ["id", "text", "entities"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", default="../shared/datasets", type=Path)
    args = parser.parse_args()
    out_root = Path(__file__).parent
    for task, splits in PLAN.items():
        orders: dict[str, list[dict]] = {}
        for split, (source, n, offset) in splits.items():
            if source not in orders:
                lines = (args.shared / task / source).read_text(encoding="utf-8").splitlines()
                rows = [json.loads(line) for line in lines if line.strip()]
                orders[source] = random.Random(SEED).sample(rows, len(rows))
            chosen = orders[source][offset : offset + n]
            (out_root / task).mkdir(exist_ok=True)
            with open(out_root / task / f"{split}.jsonl", "w", encoding="utf-8") as fh:
                for row in chosen:
                    keep = {k: row[k] for k in KEEP[task]}
                    if task == "conll2003":
                        keep["entities"] = [{"text": e["text"], "type": e["type"]} for e in row["entities"]]
                    fh.write(json.dumps(keep, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
