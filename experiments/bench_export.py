"""Round trip of `progopt export --to openai`: do the exported requests, sent to llama.cpp's OpenAI-compatible
server (same model file, greedy), give the outputs that `progopt run` gives?

For each artifact (single-step programs with a `direct` step), the script starts `python -m llama_cpp.server`
on 127.0.0.1 with the step's model file, runs the artifact's program in process on the first N test examples
of its task, sends the exported request filled with the same inputs, and compares the output field.

    PYTHONPATH=. .venv/bin/python experiments/bench_export.py --n 100 --out experiments/results/export-2026-12-07 \
        experiments/results/sweep-quickstart-2026-12-02/cells/41def203b881/artifact.json \
        experiments/results/sweep-quickstart-2026-12-02/cells/0a8f03a05913/artifact.json

Run from the checkout with the checkout trusted (`PROGOPT_TRUST=$PWD`, or after a compile here).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import sys
import time
import urllib.request
from importlib import metadata
from pathlib import Path
from typing import Any

from optimizer import refs
from optimizer.artifact import load_artifact, read_artifact
from optimizer.artifact.export import export_openai, render
from optimizer.artifact.prompts import step_views
from optimizer.models.files import resolve
from tests.servers import free_port, wait_until_ready


def _server(gguf: Path, alias: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                             "--port", str(port), "--n_ctx", "2048", "--n_threads", "2", "--model_alias", alias],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_until_ready(proc, lambda: urllib.request.urlopen(f"{url}/v1/models", timeout=2), "llama_cpp.server")
    return proc, url


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


def _their_output(reply: dict[str, Any], field: str, fmt: str) -> Any:
    choice = reply["choices"][0]
    text = choice["message"]["content"] if "message" in choice else choice["text"]
    if fmt == "json":
        try:
            return json.loads(text).get(field)
        except (json.JSONDecodeError, AttributeError):
            return f"<unparsed: {text[:60]!r}>"
    return text.strip()


def round_trip(artifact: Path, n: int) -> dict[str, Any]:
    doc = read_artifact(artifact)
    (step, config), = doc["steps"].items()
    program = load_artifact(artifact)
    task = refs.module_of(doc["program"]["ref"]).TASK  # run from the checkout: the reference is relative to it
    rows = task.load("test", limit=n)
    request = export_openai(step_views(artifact))[step]
    field = next(iter(config["signature"]["outputs"]))
    proc, url = _server(resolve(config["model"]["gguf"]), request["body"]["model"])
    same, differences, started = 0, [], time.perf_counter()
    try:
        for i, row in enumerate(rows):
            inputs = {k: row[k] for k in row.inputs().keys()}  # noqa: SIM118 - an Example, not a dict
            ours = program(**inputs).get(field)
            ours = getattr(ours, "value", ours)
            theirs = _their_output(_post(url + request["endpoint"], render(request, inputs)), field, config["format"])
            if ours == theirs:
                same += 1
            else:
                differences.append({"row": i, "progopt": ours, "exported": theirs})
    finally:
        proc.terminate()
        proc.wait(30)
    return {"artifact": str(artifact), "step": step, "model": config["model"]["name"], "format": config["format"],
            "endpoint": request["endpoint"], "notes": request["notes"], "examples": len(rows), "same": same,
            "differences": differences, "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", nargs="+", type=Path)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [round_trip(a, args.n) for a in args.artifacts]
    versions = {p: metadata.version(p) for p in ("progopt", "dspy", "llama_cpp_python", "mlflow")}
    result = {"command": " ".join(sys.argv), "date": dt.date.today().isoformat(), "versions": versions,
              "machine": f"{platform.machine()}, {platform.python_version()}, {platform.platform()}", "rows": rows}
    (args.out / "results.json").write_text(json.dumps(result, indent=1, default=str))
    lines = ["| artifact | model | format | endpoint | same / examples | seconds |", "|---|---|---|---|---|---|"]
    lines += [f"| {Path(r['artifact']).parent.name} | {r['model']} | {r['format']} | {r['endpoint']} | "
              f"{r['same']} / {r['examples']} | {r['seconds']} |" for r in rows]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
