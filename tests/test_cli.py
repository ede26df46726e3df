"""User mistakes end in one clear line on stderr and a non-zero exit, never a traceback."""

import pytest

from conftest import run_kit


def test_help_lists_the_pipeline_commands():
    result = run_kit("--help")
    assert result.returncode == 0
    for command in ("fetch", "train", "predict", "score", "demo"):
        assert command in result.stdout


@pytest.mark.parametrize("args, message", [
    (["score", "missing.csv", "--labels", "missing-too.csv"], "labels file not found: missing-too.csv"),
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["train", "--preset", "gpu-imaginary"], "unknown preset 'gpu-imaginary'"),
    (["train", "--set", "epochz=3"], "unknown config key 'epochz'"),
    (["train", "--set", "epochs=many"], "expected int"),
    (["fetch", "--from", "/no/such/dir"], "no such directory"),
    (["predict", "--set", "runs_dir=/no/such/runs"], "no saved config"),
])
def test_mistakes_are_one_line(args, message, tmp_path):
    result = run_kit(*args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in result.stderr


def test_bad_submission_csv_is_one_line(tmp_path):
    (tmp_path / "labels.csv").write_text("id,label\n1,1\n")
    (tmp_path / "sub.csv").write_text("id,label\n1,banana\n")
    result = run_kit("score", tmp_path / "sub.csv", "--labels", tmp_path / "labels.csv")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'sub.csv'}: 1 labels are NaN, infinite or not numbers"]


def test_train_before_fetch_says_what_to_do(tmp_path):
    result = run_kit("train", "--set", f"data_dir={tmp_path / 'nothing'}", cwd=tmp_path)
    assert result.returncode == 2
    assert "run `python -m kit fetch --from DIR`" in result.stderr
