"""`seqguard compare` and `seqguard retrain` at the command line: verdicts and errors (the winning path runs in
tests/test_loop.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from seqguard.cli import main


@pytest.fixture(scope="module")
def recent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from seqguard.generator import GeneratorConfig, generate

    path = tmp_path_factory.mktemp("recent") / "recent.parquet"
    generate(GeneratorConfig(users=300, days=2, seed=17)).events.to_parquet(path)
    return path


def test_a_model_does_not_win_against_itself(tiny_checkpoint: Path, recent: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(tiny_checkpoint), str(tiny_checkpoint), "--data", str(recent), "--out",
                 str(tmp_path)]) == 0
    result = json.loads((tmp_path / "compare.json").read_text())
    assert result["winner"] == "champion" and not result["challenger_wins"]
    assert result["champion"]["entity"] == result["challenger"]["entity"]
    assert result["champion"]["entity"]["n"] == result["data"]["entities"]
    assert "champion wins" in capsys.readouterr().out
    assert "| champion |" in (tmp_path / "compare.md").read_text()
    # With an allowance for a recall fall and a negative gain bar, the same model is "not worse": a rule, not luck.
    assert main(["compare", str(tiny_checkpoint), str(tiny_checkpoint), "--data", str(recent), "--out",
                 str(tmp_path), "--min-gain", "-0.01"]) == 0
    assert json.loads((tmp_path / "compare.json").read_text())["winner"] == "challenger"


@pytest.mark.parametrize(("extra", "needle"), [
    (["--fpr", "1.5"], "--fpr"),
    (["--max-recall-drop", "-1"], "--max-recall-drop"),
    (["--feedback", "/nonexistent.sqlite"], "--feedback"),
])
def test_compare_argument_errors_exit_2(tiny_checkpoint: Path, recent: Path, tmp_path: Path, extra: list[str],
                                        needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["compare", str(tiny_checkpoint), str(tiny_checkpoint), "--data", str(recent), "--out", str(tmp_path)]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_compare_without_labels_and_bad_checkpoint_exit_2(tiny_checkpoint: Path, recent: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    unlabelled = tmp_path / "unlabelled.parquet"
    pd.read_parquet(recent).drop(columns=["is_anomaly", "scenario"]).to_parquet(unlabelled)
    assert main(["compare", str(tiny_checkpoint), str(tiny_checkpoint), "--data", str(unlabelled)]) == 2
    assert "needs labelled data" in capsys.readouterr().err
    assert main(["compare", str(tmp_path), str(tiny_checkpoint), "--data", str(recent)]) == 2
    assert "sequence_config.json" in capsys.readouterr().err


def test_retrain_refuses_what_it_cannot_compare(tiny_checkpoint: Path, recent: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    base = ["retrain", "--models", str(tiny_checkpoint), "--data", str(recent)]
    assert main([*base, "--out", str(tmp_path / "c")]) == 2
    assert "--feedback is required" in capsys.readouterr().err
    assert main([*base, "--feedback", str(tmp_path / "f.sqlite"), "--out", str(tiny_checkpoint)]) == 2
    assert "--out must differ" in capsys.readouterr().err
    other = tmp_path / "other.yaml"
    other.write_text("name: other\nsequence:\n  max_events: 7\n")
    assert main([*base, "--feedback", str(tmp_path / "f.sqlite"), "--config", str(other), "--out",
                 str(tmp_path / "c")]) == 2
    assert "sequence settings differ" in capsys.readouterr().err
