"""``sovrouter train``: what it cannot do is said before the work, in one line, and old artifacts stay whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from sovrouter.cli.main import main
from sovrouter.testing_workload import write_workload


def test_an_output_that_is_a_file_is_refused_before_training(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """It failed at the very end, after ~3 min of cross-validation and refitting on dev."""
    write_workload(tmp_path / "wl", n_requests=16, layout="shared")
    (tmp_path / "out").write_text("")
    assert main(["train", "--workload", str(tmp_path / "wl"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "is a file" in err and "loaded" not in err  # refused before reading the workload


def test_a_workload_it_cannot_fit_is_a_one_line_error_and_leaves_old_artifacts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A workload with a slot always right (here: a tiny synthetic one) crashed inside scikit-learn."""
    write_workload(tmp_path / "wl", n_requests=40, layout="shared")
    out = tmp_path / "artifacts"
    out.mkdir()
    (out / "thresholds.json").write_text("old")
    assert main(["train", "--workload", str(tmp_path / "wl"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cannot train on" in err and "Traceback" not in err
    assert (out / "thresholds.json").read_text() == "old" and [p.name for p in out.iterdir()] == ["thresholds.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".artifacts.partial")]


def test_artifacts_are_moved_in_only_once_all_are_written(tmp_path: Path) -> None:
    """Written one after another in place, a failure between them left a new model beside old thresholds."""
    from sovrouter.routing.evaluation import _publish

    class Written:
        def save(self, directory: Path) -> None:
            (Path(directory) / "router.joblib").write_text("new")
            (Path(directory) / "thresholds.json").write_text("new")

    out = tmp_path / "router"
    out.mkdir()
    (out / "router.joblib").write_text("old")
    with pytest.raises(TypeError):  # the report cannot be written: nothing moves
        _publish(out, Written(), {"not json": object()}, "card")  # type: ignore[arg-type]
    assert [p.name for p in out.iterdir()] == ["router.joblib"] and (out / "router.joblib").read_text() == "old"
    _publish(out, Written(), {"ok": 1}, "card")  # type: ignore[arg-type]
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "model_card.md", "router.joblib",
                                                     "thresholds.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".router.partial")]
