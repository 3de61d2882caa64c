"""Models of the course: VGG16 on ImageNet (notebook 01) and the chest X-ray CNN (02-05).

The chest X-ray CNN is trained once by notebook 02 and cached in ``<data dir>/models``;
:func:`load_or_train_cxr_model` loads it in notebooks 03-05, or trains it if it is missing,
so every notebook also runs on its own.

VGG16's ImageNet weights (528 MB) are looked for, in order, in an explicit path, the
``COURSE_VGG16_WEIGHTS`` variable, the course cache, and the Keras cache
(``~/.keras/models``, or ``$KERAS_HOME/models``); then downloaded. If none of that works the
same architecture is built with seeded random weights and :class:`VGG16Bundle` says so
(``trained=False``) so that every table and figure can be labelled *untrained*.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from keras import layers

from . import assets, config

VGG16_FILENAME = "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
IMAGE_SIZE = 224


@dataclass
class VGG16Bundle:
    """A VGG16 model and where its weights came from.

    ``trained`` is False when the weights are random (no ImageNet weights were reachable);
    ``source`` names the file or says "random"; ``notes`` lists candidates that were skipped.
    """

    model: keras.Model
    trained: bool
    source: str
    notes: tuple[str, ...] = ()

    def banner(self) -> str:
        """A loud, multi-line warning when the weights are untrained ('' when trained)."""
        if self.trained:
            return ""
        line = "!" * 78
        return "\n".join([
            line,
            "!!  VGG16 IS UNTRAINED: no ImageNet weights were found or downloadable.",
            "!!  The architecture is real but its weights are random (seeded), so the",
            "!!  predictions and saliency maps below are meaningless as ImageNet results.",
            "!!  They still show how the methods work. To get the real model, run",
            "!!  `python -m course_utils prefetch` with internet access, or copy",
            f"!!  {VGG16_FILENAME} into {assets.get('vgg16_weights').path.parent}",
            "!!  (or ~/.keras/models), then re-run this notebook.",
            *[f"!!  note: {n}" for n in self.notes],
            line,
        ])


def keras_cache_dir() -> Path:
    """Where Keras caches downloaded weights (``$KERAS_HOME/models`` or ``~/.keras/models``)."""
    home = os.environ.get("KERAS_HOME") or Path.home() / ".keras"
    return Path(home) / "models"


def _load_vgg16_file(path: Path) -> keras.Model:
    try:
        return keras.applications.VGG16(weights=str(path))
    except Exception as e:  # h5py/keras raise many types for a bad file
        raise ValueError(f"could not load VGG16 weights from {path}: {type(e).__name__}: {e}. "
                         f"Expected the Keras file {VGG16_FILENAME} (528 MB, "
                         f"md5 {assets.get('vgg16_weights').md5}).") from None


def load_vgg16(weights: str | Path | None = "auto", *, offline: bool | None = None,
               seed: int = config.SEED) -> VGG16Bundle:
    """VGG16 with ImageNet weights when they can be had, else seeded random weights.

    ``weights``: "auto" (search and download as described in the module docstring), a path
    to a Keras ``.h5`` weights file (must exist and load, else ValueError/FileNotFoundError),
    or None for random weights on purpose.
    """
    if weights is None:
        keras.utils.set_random_seed(seed)
        return VGG16Bundle(keras.applications.VGG16(weights=None), False, "random (on request)")
    if weights != "auto":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"VGG16 weights file not found: {path}")
        return VGG16Bundle(_load_vgg16_file(path), True, str(path))
    notes: list[str] = []
    env = os.environ.get("COURSE_VGG16_WEIGHTS")
    if env:
        path = Path(env).expanduser()
        if path.is_file():
            return VGG16Bundle(_load_vgg16_file(path), True, str(path))
        notes.append(f"COURSE_VGG16_WEIGHTS={env} does not exist")
    asset = assets.get("vgg16_weights")
    keras_copy = keras_cache_dir() / VGG16_FILENAME
    if not asset.path.exists() and keras_copy.is_file():
        problem = assets.verify(keras_copy, size_bytes=asset.size_bytes, md5=asset.md5)
        if problem is None:
            return VGG16Bundle(_load_vgg16_file(keras_copy), True, str(keras_copy))
        notes.append(f"ignored {keras_copy}: {problem}")
    path, problem = assets.try_fetch("vgg16_weights", offline=offline)
    if path is not None:
        return VGG16Bundle(_load_vgg16_file(path), True, str(path), tuple(notes))
    notes.append(problem)
    keras.utils.set_random_seed(seed)
    return VGG16Bundle(keras.applications.VGG16(weights=None), False,
                       f"random (seed {seed})", tuple(notes))


@functools.cache
def imagenet_classes() -> tuple[tuple[str, str], ...]:
    """The 1,000 ImageNet classes as (WordNet id, short name), indexed like VGG16's output.

    Read from keras-hub, which ships the same table Keras downloads as
    ``imagenet_class_index.json``; so it works offline.
    """
    from keras_hub.src.utils.imagenet.imagenet_utils import IMAGENET_NAMES

    return tuple(tuple(IMAGENET_NAMES[i]) for i in range(1000))


def class_name(index: int) -> str:
    """Readable ImageNet class name, e.g. 895 -> 'warplane', 157 -> 'papillon'."""
    return imagenet_classes()[int(index)][1].replace("_", " ")


def preprocess_vgg16(pixels: np.ndarray) -> np.ndarray:
    """(n, 224, 224, 3) RGB in [0, 255] -> VGG16 input (BGR, ImageNet mean subtracted)."""
    return keras.applications.vgg16.preprocess_input(np.array(pixels, dtype=np.float32, copy=True))


def predict_probs(model: keras.Model, pixels: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """Softmax probabilities (n, 1000) for RGB images (n, 224, 224, 3) in [0, 255]."""
    return np.asarray(model.predict(preprocess_vgg16(pixels), batch_size=batch_size, verbose=0))


def top_k(probs: np.ndarray, k: int = 5) -> list[list[tuple[int, str, float]]]:
    """For each row of (n, 1000) probabilities: the k best as (class index, name, probability)."""
    probs = np.atleast_2d(probs)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(int(i), class_name(i), float(row[i])) for i in idx] for row, idx in zip(probs, order)]


# ----------------------------------------------------------------------------- chest X-ray CNN
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


def build_pooled_cnn(image_size: int = 128, seed: int = 42,
                     widths: Sequence[int] = (12, 24, 48, 96), pooling: str = "max") -> keras.Model:
    """A second chest X-ray architecture, for reproducibility tests.

    Differs from :func:`build_cxr_cnn` in its widths (default 12-24-48-96 filters instead of
    16-32-64-64) and its head: global pooling of the last convolution straight into the output,
    instead of Flatten + Dense(64) + Dropout. ``pooling="max"`` (default) asks "is this feature
    present anywhere?", which suits small, faint lesions; ``"avg"`` asks "how much of it is
    there?" (it learned far more slowly on the phantom's faint opacities). The last convolution
    is named ``last_conv`` (for the CAMs); the output is one sigmoid, ``p_covid``.
    Input: (image_size, image_size, 1) in [0, 1].
    """
    if pooling not in ("max", "avg"):
        raise ValueError(f"pooling must be 'max' or 'avg', got {pooling!r}")
    init = keras.initializers.GlorotUniform(seed=seed)
    inputs = keras.Input((image_size, image_size, 1), name="image")
    x = inputs
    *blocks, last = widths
    for i, width in enumerate(blocks):
        x = layers.Conv2D(width, 3, padding="same", activation="relu", kernel_initializer=init,
                          name=f"conv{i + 1}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    x = layers.Conv2D(last, 3, padding="same", activation="relu", kernel_initializer=init,
                      name="last_conv")(x)
    pool = layers.GlobalMaxPooling2D if pooling == "max" else layers.GlobalAveragePooling2D
    x = pool(name=f"global_{pooling}")(x)
    outputs = layers.Dense(1, activation="sigmoid", kernel_initializer=init, name="p_covid")(x)
    return keras.Model(inputs, outputs, name=f"cxr_global_{pooling}_cnn")


#: Chest X-ray architectures by name: builder(image_size, seed=...). "cnn" is the course model.
ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {
    "cnn": build_cxr_cnn,
    "global_max": functools.partial(build_pooled_cnn, pooling="max"),
    "global_avg": functools.partial(build_pooled_cnn, pooling="avg"),
}


def _builder(architecture: str) -> Callable[..., keras.Model]:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose from {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[architecture]


#: Bump when the architecture or the training recipe changes: cached models are then retrained.
CXR_RECIPE_VERSION = 1
#: Training epochs in full / fast mode (early stopping on validation loss may stop sooner).
CXR_EPOCHS = (20, 4)


@dataclass
class TrainedCXR:
    """A trained chest X-ray CNN and its learning curves.

    ``history``: per-epoch lists ("loss", "accuracy", "val_loss", "val_accuracy");
    ``path``: where the model is cached; ``trained_now``: False if it was loaded from the cache;
    ``seconds``: training time (of the original training, for a cached model).
    """

    model: keras.Model
    history: dict[str, list[float]]
    path: Path
    trained_now: bool
    seconds: float
    settings: dict = field(default_factory=dict)


def train_cxr_model(images: np.ndarray, labels: np.ndarray, *, seed: int = config.SEED,
                    epochs: int | None = None, batch_size: int = 64,
                    validation_fraction: float = 0.1, learning_rate: float = 1e-3,
                    patience: int = 3, architecture: str = "cnn",
                    rows: np.ndarray | None = None
                    ) -> tuple[keras.Model, dict[str, list[float]], float]:
    """Train a model of :data:`ARCHITECTURES` (default: :func:`build_cxr_cnn`) with Adam and
    binary cross-entropy (as the article did).

    ``images``: (n, H, W, 1) float32 in [0, 1]; ``labels``: (n,) with 1 = COVID. A stratified
    ``validation_fraction`` of them is held out for early stopping (best weights restored).
    ``rows``: train on these rows of ``images``/``labels`` only (e.g. a data set's training
    split) — the same model as passing ``images[rows], labels[rows]``, without that copy.
    Returns ``(model, history, seconds)``. Seeded: the same call gives the same model.
    """
    from .cxr import stratified_split

    build = _builder(architecture)
    epochs = epochs if epochs is not None else config.pick(*CXR_EPOCHS)
    rows = np.arange(len(labels)) if rows is None else np.asarray(rows)
    fit_idx, val_idx = stratified_split(labels[rows], validation_fraction, seed=seed)
    fit_idx, val_idx = rows[fit_idx], rows[val_idx]
    keras.utils.set_random_seed(seed)
    model = build(images.shape[1], seed=seed)
    model.compile(keras.optimizers.Adam(learning_rate), "binary_crossentropy",
                  metrics=["accuracy"])
    stop = keras.callbacks.EarlyStopping("val_loss", patience=patience, restore_best_weights=True)
    start = time.perf_counter()
    hist = model.fit(images[fit_idx], labels[fit_idx].astype("float32"), batch_size=batch_size,
                     epochs=epochs, validation_data=(images[val_idx],
                                                     labels[val_idx].astype("float32")),
                     callbacks=[stop], shuffle=True, verbose=0)
    seconds = time.perf_counter() - start
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    return model, history, seconds


def predict_p(model: keras.Model, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """p(positive class) of a model with one sigmoid output: (n,) float32 in [0, 1].

    The one way the package turns a binary model's output into probabilities: for images
    (n, H, W, C), e.g. p(COVID), and for table rows (n, d) alike.
    """
    return np.asarray(model.predict(inputs, batch_size=batch_size, verbose=0),
                      dtype=np.float32).reshape(-1)


def load_or_train_cxr_model(data, *, seed: int = config.SEED, epochs: int | None = None,
                            retrain: bool = False, architecture: str = "cnn") -> TrainedCXR:
    """A chest X-ray model for ``data`` (a :class:`course_utils.data.CourseCXR`), cached on disk.

    ``architecture``: a key of :data:`ARCHITECTURES` (default: the course CNN). The cache key
    covers the data (its fingerprint), the architecture, the seed, the epochs and the recipe
    version, so changing any of them trains a new model. The model file is written to a
    temporary name and renamed, so an interrupted save never leaves a broken cache.
    """
    _builder(architecture)  # unknown names fail before any work
    epochs = epochs if epochs is not None else config.pick(*CXR_EPOCHS)
    settings = {"data": data.fingerprint, "source": data.source, "seed": seed, "epochs": epochs,
                "recipe": CXR_RECIPE_VERSION}
    if architecture != "cnn":  # the course CNN's key predates the argument: keep its caches valid
        settings["architecture"] = architecture
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    folder = config.data_dir() / "models"
    path = folder / f"cxr_{architecture}_{data.source}_{key}.keras"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists() and not retrain:
        meta = json.loads(meta_path.read_text())
        model = keras.models.load_model(path)
        return TrainedCXR(model, meta["history"], path, False, meta["seconds"], settings)
    model, history, seconds = train_cxr_model(data.images, data.labels, seed=seed, epochs=epochs,
                                              architecture=architecture, rows=data.train_idx)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial.keras")
    model.save(tmp)
    tmp_meta = meta_path.with_name(f".{meta_path.name}.partial")
    tmp_meta.write_text(json.dumps({"history": history, "seconds": seconds, "settings": settings}))
    os.replace(tmp_meta, meta_path)
    os.replace(tmp, path)
    return TrainedCXR(model, history, path, True, seconds, settings)
