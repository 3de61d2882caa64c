"""Saliency on a table: gradient x input, permutation importance, the breast cancer MLP."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from course_utils import models, tabular


def test_tabular_attribution_of_a_linear_model_is_w_times_x():
    rng = np.random.default_rng(9)
    w, b = rng.normal(size=5).astype(np.float32), np.float32(0.3)
    inputs = keras.Input((5,))
    dense = keras.layers.Dense(1, activation="sigmoid")
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([w[:, None], np.array([b])])
    x = rng.normal(size=(7, 5)).astype(np.float32)
    np.testing.assert_allclose(tabular.gradient_x_input(model, x), w * x, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(tabular.gradient_x_input(model, x, target=0), -w * x, rtol=1e-5,
                               atol=1e-7)
    with pytest.raises(ValueError, match="table"):
        tabular.gradient_x_input(model, x[None])


def test_permutation_importance_is_zero_for_ignored_columns():
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(1, activation="sigmoid")
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([np.array([[4.0], [0.0], [0.0]], np.float32), np.zeros(1, np.float32)])
    x = np.random.default_rng(10).normal(size=(200, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    mean, std = tabular.permutation_importance(model, x, y, n_repeats=5)
    assert mean.shape == std.shape == (3,)
    assert mean[0] > 0.5 and mean[1] == mean[2] == 0.0


def test_breast_cancer_split_is_standardised_and_labels_malignant_as_one():
    split = tabular.load_breast_cancer_split()
    assert split.x_train.shape[1] == split.x_test.shape[1] == len(split.features) == 30
    assert len(split.y_train) + len(split.y_test) == 569
    assert split.y_train.sum() + split.y_test.sum() == 212  # 212 malignant, 357 benign
    np.testing.assert_allclose(split.x_train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(split.x_train.std(0), 1, atol=1e-3)
    assert split.positive == "malignant"


def test_tabular_mlp_learns_the_breast_cancer_set():
    split = tabular.load_breast_cancer_split()
    model = tabular.train_mlp(split, epochs=30)
    p = models.predict_p(model, split.x_test)
    assert p.shape == split.y_test.shape and np.mean((p > 0.5) == split.y_test) > 0.9
    attr = tabular.gradient_x_input(model, split.x_test)
    assert attr.shape == split.x_test.shape and np.isfinite(attr).all()
