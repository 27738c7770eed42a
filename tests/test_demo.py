"""The demo and the comparisons run end to end on a reduced budget (no timing assertions)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from ferroptim.demo.compare import questions, run_compare
from ferroptim.demo.demo import run_demo
from ferroptim.demo.digits import load_digits_nchw, small_cnn, split_digits


def test_split_is_stratified_and_standardized_on_training_data_only():
    x, y = load_digits_nchw()
    parts = split_digits(x, y, seed=0)
    assert len(parts.x_test) == 360
    assert len(parts.x_train) + len(parts.x_val) + len(parts.x_test) == len(x)
    assert abs(float(parts.x_train.mean())) < 1e-5
    assert abs(float(parts.x_train.std()) - 1.0) < 1e-4
    assert abs(float(parts.x_test.mean())) > 1e-6  # not refitted on the test part
    assert np.array_equal(np.bincount(parts.y_test), np.bincount(parts.y_test, minlength=10))
    assert np.bincount(parts.y_test).min() >= 35


def test_small_cnn_maps_digits_to_ten_logits():
    model = small_cnn(seed=1)
    x = np.zeros((5, 1, 8, 8), np.float32)
    assert model(x).shape == (5, 10)
    assert model.named_parameters()[0][0] == "0.weight"


def test_demo_trains_and_reports(tmp_path, capsys):
    plot = tmp_path / "curves.png"
    result = run_demo(epochs=4, patience=2, plot=str(plot), progress=False)
    out = capsys.readouterr().out
    assert "test accuracy (held-out 20%)" in out
    assert result.test_accuracy > 0.7  # 4 epochs; the full demo reaches >= 97%
    assert result.optimizer_steps == result.epochs_run * 21
    assert result.native_step_us > 0 and result.reference_step_us > 0
    assert plot.stat().st_size > 10_000


def test_compare_runs_a_question_and_writes_the_figure(tmp_path, capsys):
    plot = tmp_path / "compare.png"
    results = run_compare(epochs=1, only=["output"], plot=str(plot))
    assert [r.label for r in results] == ["softmax + cross-entropy", "sigmoid + MSE"]
    assert all(0.0 <= r.test_accuracy <= 1.0 for r in results)
    assert "| output + loss (Adam) | sigmoid + MSE |" in capsys.readouterr().out
    assert plot.stat().st_size > 10_000


def test_every_question_builds_models_and_optimizers():
    for variants in questions(seed=0).values():
        for variant in variants:
            model = variant.model()
            opt = variant.optimizer(model.parameters())
            assert len(opt.param_groups[0]["params"]) == len(model.parameters())
