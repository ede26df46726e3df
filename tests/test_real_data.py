"""The same commands on real Kaggle photos (../shared/data); skipped when they are absent."""

import pandas as pd

from conftest import REAL_COMPETITION, needs_real_data, run_kit

pytestmark = [needs_real_data]


def test_fetch_train_predict_on_real_images(tmp_path):
    data = tmp_path / "data"
    common = ["--preset", "cnn-cpu", "--set", f"data_dir={data}", "--set", f"runs_dir={tmp_path / 'runs'}",
              "--set", f"submissions_dir={tmp_path / 'subs'}"]
    fetched = run_kit("fetch", "--from", REAL_COMPETITION, *common)
    assert fetched.returncode == 0, fetched.stderr
    assert "indexed 3000 training images (cat 1500, dog 1500) and 1000 test images" in fetched.stdout

    tiny = ["--set", "limit=200", "--set", "image_size=48", "--set", "epochs=1", "--set", "width=8", "--set", "dense=16"]
    trained = run_kit("train", *common, *tiny)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "validation log loss" in trained.stdout

    predicted = run_kit("predict", *common)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    sub = pd.read_csv(tmp_path / "subs" / "cnn-cpu.csv")
    sample = pd.read_csv(REAL_COMPETITION / "sample_submission.csv")
    assert len(sub) == 1000 and sub["id"].tolist() == sorted(sample["id"].tolist())
    assert sub["label"].between(0.005, 0.995).all()
