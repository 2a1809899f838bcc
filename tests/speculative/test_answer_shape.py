"""The learned answer-shape model: features, the shipped artifact, training, the CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from sovrouter.cli.main import main
from sovrouter.contracts import NormalizedRequest
from sovrouter.errors import ConfigError
from sovrouter.intake import normalize_chat
from sovrouter.speculative.answer_shape import FEATURE_NAMES, AnswerShapeModel, prompt_features
from sovrouter.speculative.answer_shape_train import build_rows, fit, out_of_fold, report
from sovrouter.testing_workload import write_workload

OPTIONS = "\n".join(f"{c}. option number {i} about the topic" for i, c in enumerate("ABCDEFGHIJ"))
MC = ("The following is a multiple choice question. Think step by step and then finish your answer with "
      f"'the answer is (X)'.\nQuestion: Which of these is right?\n{OPTIONS}")
MATH = "Solve: if 3x + 5 = 20, what is x? Please reason step by step, and put your final answer in \\boxed{}."
OPEN = "Tell me about the history of Rome."


def _req(text: str, rid: str = "r") -> NormalizedRequest:
    return normalize_chat({"messages": [{"role": "user", "content": text}]}, tenant="t", request_id=rid)


def test_features_are_generic_and_complete() -> None:
    f = prompt_features(_req(MC))
    assert len(f) == len(FEATURE_NAMES) and all(np.isfinite(f))
    assert f[FEATURE_NAMES.index("option_lines")] == 10
    assert f[FEATURE_NAMES.index("reasoning_cue")] == 1.0
    assert prompt_features(_req(OPEN))[FEATURE_NAMES.index("option_lines")] == 0


def test_shipped_artifact_loads_and_predicts_in_range() -> None:
    model = AnswerShapeModel.load()
    assert model.meta["out_of_fold"]["answers"] > 1000
    shapes = model.shapes([_req(t, str(i)) for i, t in enumerate((MC, MATH, OPEN, "", "🙂"))])
    for s in shapes:
        assert 0.0 <= s.copy_fraction <= 1.0 and 1 <= s.tokens_p50 <= s.tokens_p90
    mc, math, open_ = shapes[:3]
    assert mc.copy_fraction > open_.copy_fraction  # answers restate the options
    assert math.tokens_p50 > mc.tokens_p50  # a derivation is longer than a choice
    p = model.predict(_req(MC))
    assert p.copy_fraction == mc.copy_fraction and p.speculate == (mc.copy_fraction >= model.threshold)
    assert model.shapes([]) == []


def test_round_trip_and_bad_artifacts(tmp_path: Path) -> None:
    model = AnswerShapeModel.load()
    path = tmp_path / "a.json"
    model.save(path)
    again = AnswerShapeModel.load(path)
    assert again.shape(_req(MATH)) == model.shape(_req(MATH))
    raw = json.loads(path.read_text())
    raw["features"] = raw["features"][:-1]
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="features"):
        AnswerShapeModel.load(path)
    raw = model.to_dict()
    raw["copy"]["roots"] = [10**9]
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError):
        AnswerShapeModel.load(path)
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError):
        AnswerShapeModel.load(path)
    path.write_text("{not json")
    with pytest.raises(ConfigError):
        AnswerShapeModel.load(path)
    with pytest.raises(ConfigError):
        AnswerShapeModel.load(tmp_path / "missing.json")


def _synthetic(n: int = 400) -> tuple[dict[str, NormalizedRequest], dict[tuple[str, str], str]]:
    """Prompts with a code block get answers that copy it and are long; plain questions get short, new text."""
    rng = random.Random(0)
    reqs, answers = {}, {}
    for i in range(n):
        rid = f"q{i}"
        if i % 2:
            code = "\n".join(f"value_{rng.randrange(99)} = compute_{j}(item_{j}, scale)" for j in range(12))
            reqs[rid] = _req(f"Look at this code:\n```python\n{code}\n```\nWhat do you think of it?", rid)
            answers[(rid, "m")] = f"Here it is again with one change:\n{code}\nThat is all."
        else:
            reqs[rid] = _req(f"What is the weather like on planet {rng.randrange(10**6)}?", rid)
            answers[(rid, "m")] = rng.choice(["Sunny.", "Cold and dark, mostly.", "Nobody knows yet."])
    return reqs, answers


def test_training_learns_copy_and_length_out_of_fold_and_is_deterministic() -> None:
    reqs, answers = _synthetic()
    rows = build_rows(reqs, answers)
    assert rows.x.shape == (400, len(FEATURE_NAMES))
    code = np.asarray([int(r[1:]) % 2 == 1 for r in rows.request_ids])
    assert rows.copy[code].mean() > 0.8 > 0.05 > rows.copy[~code].mean()
    oof = out_of_fold(rows)
    assert oof["copy"][code].min() > oof["copy"][~code].max()
    assert oof["tokens_p50"][code].min() > oof["tokens_p50"][~code].max()
    rep = report(rows, oof)
    assert rep["precision_of_flag"] == 1.0 and rep["recall_of_flag"] == 1.0
    assert fit(rows).to_dict() == fit(rows).to_dict()


def test_cli_trains_from_a_workload(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wl = write_workload(tmp_path / "wl", n_requests=60, seed=3)
    out = tmp_path / "shape.json"
    assert main(["train-answer-shape", "--workload", str(wl.paths.root), "--out", str(out)]) == 0
    model = AnswerShapeModel.load(out)
    assert model.meta["out_of_fold"]["answers"] == len(wl.responses)
    assert "train-answer-shape" in capsys.readouterr().err
    assert main(["train-answer-shape", "--workload", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
