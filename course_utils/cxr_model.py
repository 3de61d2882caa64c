"""The small chest X-ray CNN used in notebooks 02-05 (builder only; training lives in ``models``)."""
from __future__ import annotations

import keras
from keras import layers


def build_cxr_cnn(image_size: int = 128, seed: int = 42, width: int = 16) -> keras.Model:
    """A small VGG-style binary classifier for (image_size, image_size, 1) inputs in [0, 1].

    Built with the Functional API (not ``Sequential``) so that tf-keras-vis model
    modifiers work under Keras 3. The last convolution is named ``last_conv`` (the
    Grad-CAM layer); the output is one sigmoid unit, p(COVID).
    """
    init = keras.initializers.GlorotUniform(seed=seed)
    inputs = keras.Input((image_size, image_size, 1), name="image")
    x = inputs
    for i, mult in enumerate((1, 2, 4)):
        x = layers.Conv2D(width * mult, 3, padding="same", activation="relu",
                          kernel_initializer=init, name=f"conv{i + 1}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    x = layers.Conv2D(width * 4, 3, padding="same", activation="relu",
                      kernel_initializer=init, name="last_conv")(x)
    x = layers.MaxPooling2D(2, name="pool4")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(64, activation="relu", kernel_initializer=init, name="dense")(x)
    x = layers.Dropout(0.3, seed=seed, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", kernel_initializer=init, name="p_covid")(x)
    return keras.Model(inputs, outputs, name="cxr_cnn")
