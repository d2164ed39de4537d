"""The input-topic cases shared with the daemon's parser: testdata/event_cases.json.

Each case is one raw message and what the reference (``json.loads`` then ``featurize`` with
``check_ids=True``) makes of it: the error message and dead-letter code, or the model inputs.
Each case also says what the message is as a candidate of a score request (``candidate``):
only its ``item`` and ``attrs`` count, at the request time ``candidate_ts_ms``, featurised
with ``need_actions=False`` (the HTTP API's /score bodies). encoders/event_parser_test.cc
checks the daemon's EventParser + Featurizer against the same file, so the two sides agree
case by case. To add a case, append its name, config and
message to the file and regenerate the expectations from this module:

    PYTHONPATH=python /usr/bin/python3 python/tests/test_event_cases.py --write

then read the diff: a changed expectation is a changed contract.
"""

from __future__ import annotations

import json
import os
import sys

import pytest
from sirenrope.config import ModelConfig
from sirenrope.features import EventError, featurize

CASES_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "testdata", "event_cases.json")


def _load() -> dict:
    with open(CASES_PATH, "r", encoding="utf-8") as f:
        return json.load(f)


def expectation(message: str, cfg: ModelConfig) -> dict:
    """What the reference does with one raw message: {"error", "code"} or {"inputs"}."""
    ev = json.loads(message)
    try:
        arr = featurize([ev], cfg, need_actions=True, check_ids=True)
    except EventError as e:
        text = str(e)
        prefix = "event[0]."
        return {"error": text[len(prefix):] if text.startswith(prefix) else text,
                "code": e.code}
    inputs: dict = {"ts_ms": int(arr.ts_ms[0])}
    if cfg.schema.item.kind == "features":
        inputs["item_features"] = [float(x) for x in arr.item[0]]
    else:
        inputs["item_row"] = int(arr.item[0])
    inputs["actions"] = [float(x) for x in arr.actions[0]]
    inputs["labels"] = [float(x) for x in arr.labels[0]]
    inputs["cat_rows"] = [int(x) for x in arr.cat[0]]
    return {"inputs": inputs}


def candidate_expectation(message: str, cfg: ModelConfig, ts_ms: int) -> dict:
    """The same message as a candidate scored at ``ts_ms``: {"error", "code"} or {"inputs"}.

    A candidate is an event without ids, time and actions: only ``item`` and ``attrs`` are
    read (whatever else it holds is ignored), and the request time stands in for ``ts_ms``.
    """
    ev = json.loads(message)
    cand = {k: v for k, v in ev.items() if k in ("item", "attrs")} if isinstance(ev, dict) else ev
    if isinstance(cand, dict):
        cand["ts_ms"] = ts_ms
    try:
        arr = featurize([cand], cfg, need_actions=False)
    except EventError as e:
        text = str(e)
        prefix = "event[0]."
        return {"error": text[len(prefix):] if text.startswith(prefix) else text,
                "code": e.code}
    inputs: dict = {"ts_ms": int(arr.ts_ms[0])}
    if cfg.schema.item.kind == "features":
        inputs["item_features"] = [float(x) for x in arr.item[0]]
    else:
        inputs["item_row"] = int(arr.item[0])
    inputs["actions"] = [float(x) for x in arr.actions[0]]
    inputs["labels"] = [float(x) for x in arr.labels[0]]
    inputs["cat_rows"] = [int(x) for x in arr.cat[0]]
    return {"inputs": inputs}


def _configs(doc: dict) -> dict[str, ModelConfig]:
    return {name: ModelConfig.from_dict(c) for name, c in doc["configs"].items()}


def _cases() -> list[dict]:
    return _load()["cases"]


def test_case_names_are_unique_and_configs_known():
    doc = _load()
    names = [c["name"] for c in doc["cases"]]
    assert len(names) == len(set(names))
    assert {c["config"] for c in doc["cases"]} <= set(doc["configs"])


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["name"])
def test_reference_matches_the_shared_case(case):
    cfg = _configs(_load())[case["config"]]
    want = {k: case[k] for k in ("error", "code", "inputs") if k in case}
    assert expectation(case["message"], cfg) == want


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["name"])
def test_candidate_reference_matches_the_shared_case(case):
    doc = _load()
    cfg = _configs(doc)[case["config"]]
    assert candidate_expectation(case["message"], cfg, doc["candidate_ts_ms"]) == case["candidate"]


def write() -> None:
    """Rewrites every case's expectation from the reference, keeping names and messages."""
    doc = _load()
    cfgs = _configs(doc)
    cases = []
    for case in doc["cases"]:
        kept = {k: case[k] for k in ("name", "config", "message")}
        kept.update(expectation(case["message"], cfgs[case["config"]]))
        kept["candidate"] = candidate_expectation(case["message"], cfgs[case["config"]],
                                                  doc["candidate_ts_ms"])
        cases.append(kept)
    doc["cases"] = cases
    with open(CASES_PATH, "w", encoding="utf-8") as f:
        f.write(dumps(doc))


def dumps(doc: dict) -> str:
    """One case per line: reviewable diffs, ASCII only (escapes stay escapes)."""
    lines = ["{", f'"about": {json.dumps(doc["about"])},',
             f'"candidate_ts_ms": {json.dumps(doc["candidate_ts_ms"])},', '"configs": {']
    names = list(doc["configs"])
    for i, name in enumerate(names):
        comma = "," if i + 1 < len(names) else ""
        lines.append(f"  {json.dumps(name)}: {json.dumps(doc['configs'][name])}{comma}")
    lines.append("},")
    lines.append('"cases": [')
    for i, case in enumerate(doc["cases"]):
        comma = "," if i + 1 < len(doc["cases"]) else ""
        lines.append("  " + json.dumps(case) + comma)
    lines.append("]}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(__doc__)
    write()
