"""Saliency beyond images: a tabular model, its gradient x input, and permutation importance.

Notebook 04 asks whether attributions agree with a model-agnostic importance on data where the
features have names: scikit-learn's Wisconsin breast cancer set (:func:`load_breast_cancer_split`),
a small Keras MLP (:func:`build_mlp`, :func:`train_mlp`), gradient x input per row and feature
(:func:`gradient_x_input`) and scikit-learn's permutation importance for a Keras model
(:func:`permutation_importance`). Probabilities come from :func:`course_utils.models.predict_p`.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import layers

from . import config, models, saliency


@dataclass(frozen=True)
class TabularSplit:
    """A standardised tabular data set split into train and test.

    ``x_train``/``x_test``: (n, d) float32, each feature centred and scaled by the training
    part's mean and standard deviation (so 0 = the average training patient, 1 = one s.d.
    above); ``y_train``/``y_test``: (n,) int64 with 1 = the positive class; ``features``: the d
    feature names; ``positive``: the name of class 1.
    """

    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    features: tuple[str, ...]
    positive: str


def load_breast_cancer_split(test_size: float = 0.3, seed: int = config.SEED) -> TabularSplit:
    """scikit-learn's Wisconsin breast cancer set (569 tumours, 30 features), standardised.

    Ships with scikit-learn (no download). Relabelled so that 1 = malignant (scikit-learn codes
    malignant as 0). Stratified split; the scaler is fitted on the training part only.
    """
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    ds = load_breast_cancer()
    y = (ds.target == list(ds.target_names).index("malignant")).astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(ds.data, y, test_size=test_size, stratify=y,
                                              random_state=seed)
    scaler = StandardScaler().fit(x_tr)
    return TabularSplit(scaler.transform(x_tr).astype(np.float32),
                        scaler.transform(x_te).astype(np.float32), y_tr, y_te,
                        tuple(str(f) for f in ds.feature_names), "malignant")


def build_mlp(n_features: int, seed: int = config.SEED, hidden: int = 16) -> keras.Model:
    """A small Functional MLP for tabular data: d -> Dense(hidden, relu) -> Dense(1, sigmoid)."""
    init = keras.initializers.GlorotUniform(seed=seed)
    inputs = keras.Input((n_features,), name="features")
    x = layers.Dense(hidden, activation="relu", kernel_initializer=init, name="hidden")(inputs)
    outputs = layers.Dense(1, activation="sigmoid", kernel_initializer=init, name="p_positive")(x)
    return keras.Model(inputs, outputs, name="tabular_mlp")


def train_mlp(split: TabularSplit, *, epochs: int = 60, seed: int = config.SEED,
                      hidden: int = 16, learning_rate: float = 3e-3) -> keras.Model:
    """Fit :func:`build_mlp` on ``split``'s training part.

    Adam, binary cross-entropy, batches of 64, seeded; a few seconds on a CPU.
    """
    keras.utils.set_random_seed(seed)
    model = build_mlp(split.x_train.shape[1], seed=seed, hidden=hidden)
    model.compile(keras.optimizers.Adam(learning_rate), "binary_crossentropy", metrics=["accuracy"])
    model.fit(split.x_train, split.y_train.astype("float32"), epochs=epochs, batch_size=64,
              shuffle=True, verbose=0)
    return model


def gradient_x_input(model: keras.Model, x: np.ndarray, target: int = 1) -> np.ndarray:
    """Gradient x input for rows of a table: (n, d) -> (n, d), logit units.

    The gradient of the target's logit (for a sigmoid model: +z for target 1, -z for 0) w.r.t.
    each feature at the row itself, times the feature's value: a local, first-order quantity.
    The value is the feature's distance from the point x = 0 (with standardised features, the
    average training patient) and the gradient is the slope *at the row*. Only for a linear
    model z = x.w + b is the product (w * x) exactly each feature's contribution relative to
    x = 0, summing to z(x) - z(0); for a non-linear model the slope changes between 0 and x, so
    the attributions need not sum to that difference (Integrated Gradients from the baseline 0
    would, up to its integration error).
    """
    x = np.asarray(x, np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected a table (n, d), got shape {x.shape}")
    return saliency.input_gradients(model, x, target) * x


class _KerasBinary:
    """The minimum scikit-learn's scorers need from a Keras sigmoid model."""

    def __init__(self, model: keras.Model):
        self.model = model

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags, Tags, TargetTags

        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags())

    def fit(self, x, y):  # pragma: no cover - never refitted; present for the estimator API
        return self


def permutation_importance(model: keras.Model, x: np.ndarray, y: np.ndarray, *,
                           n_repeats: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's permutation importance of each column for a Keras sigmoid model.

    Importance = the mean drop of the score when one column of ``x`` (n, d) is shuffled,
    ``n_repeats`` times. The score is minus the binary cross-entropy (log-loss, nats) of
    p(class 1) against ``y`` (n,) 0/1 — smoother than accuracy on a small test set.
    Returns ``(mean, std)``, each (d,) in nats.
    """
    from sklearn.inspection import permutation_importance as sk_permutation_importance
    from sklearn.metrics import log_loss

    def score(estimator, xs, ys):
        p = models.predict_p(estimator.model, xs)
        return -log_loss(ys, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])

    res = sk_permutation_importance(_KerasBinary(model), np.asarray(x, np.float32), np.asarray(y),
                                    scoring=score, n_repeats=n_repeats, random_state=seed)
    return res.importances_mean, res.importances_std
