"""Small models and data shared by the tests (one definition each)."""

from __future__ import annotations

import keras
import numpy as np

from course_utils.models import build_cxr_cnn

#: Side of the small CNN's images and the square whose brightness tells the classes apart.
SIDE = 32
REGION = slice(16, 28)


def linear_model(weights: np.ndarray, activation: str = "sigmoid", bias: float | None = None,
                 input_shape: tuple[int, ...] | None = None) -> keras.Model:
    """y = activation(flatten(x) @ weights (+ bias)): the gradient of its logit w.r.t. x is known.

    ``weights``: (d, k) or, for one output, any shape with d entries (reshaped to (d, 1));
    ``input_shape`` defaults to ``weights.shape + (1,)`` for one output.
    """
    w = np.asarray(weights, np.float32)
    if input_shape is None:
        input_shape = w.shape + (1,)
        w = w.reshape(-1, 1)
    inputs = keras.Input(input_shape)
    dense = keras.layers.Dense(w.shape[1], activation=activation, use_bias=bias is not None)
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    dense.set_weights([w] if bias is None else [w, np.full(w.shape[1], bias, np.float32)])
    return model


def tiny_mlp(seed: int, size: int = 8) -> keras.Model:
    """A tiny random ReLU network with a sigmoid output, for (size, size, 1) images."""
    init = keras.initializers.GlorotNormal(seed=seed)
    inputs = keras.Input((size, size, 1))
    h = keras.layers.Dense(16, activation="relu", kernel_initializer=init)(
        keras.layers.Flatten()(inputs))
    out = keras.layers.Dense(1, activation="sigmoid", kernel_initializer=init)(h)
    return keras.Model(inputs, out)


def brightness_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, SIDE, SIDE, 1) noise in [0.2, 0.6]; class 1 brightens REGION, class 0 darkens it."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.2, 0.6, (n, SIDE, SIDE, 1)).astype(np.float32)
    y = rng.integers(0, 2, n)
    x[:, REGION, REGION, 0] += (rng.uniform(0.02, 0.12, n) * (2 * y - 1))[:, None, None]
    return np.clip(x, 0, 1), y


def trained_square_cnn() -> tuple[keras.Model, np.ndarray]:
    """The course CNN at SIDE px, 3 epochs on 512 images; returns it and 16 held-out images.

    It tells a bright square from a dark one (>= 90 % right on the held-out images).
    """
    keras.utils.set_random_seed(0)
    model = build_cxr_cnn(SIDE, seed=0, width=16)
    model.compile(keras.optimizers.Adam(3e-3), "binary_crossentropy")
    x, y = brightness_data(512, seed=0)
    model.fit(x, y.astype(np.float32), epochs=3, batch_size=64, verbose=0)
    x_test, y_test = brightness_data(16, seed=1)
    assert ((model.predict(x_test, verbose=0)[:, 0] >= 0.5) == y_test).mean() >= 0.9
    return model, x_test
