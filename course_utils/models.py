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
from importlib import resources
from pathlib import Path

import keras
import numpy as np
from filelock import FileLock, Timeout
from keras import layers

from . import _checks, assets, config, stage

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
        expected = assets.get("vgg16_weights")
        if path.is_dir():
            notes.append(f"COURSE_VGG16_WEIGHTS={env} is a folder; it must name the file "
                         f"{VGG16_FILENAME}")
        elif not path.is_file():
            notes.append(f"COURSE_VGG16_WEIGHTS={env} does not exist")
        elif problem := assets.verify(path, size_bytes=expected.size_bytes, md5=expected.md5):
            notes.append(f"COURSE_VGG16_WEIGHTS={env} is not the Keras VGG16 ImageNet file "
                         f"({problem}); ignored")
        else:
            return VGG16Bundle(_load_vgg16_file(path), True, str(path))
    asset = assets.get("vgg16_weights")
    keras_copy = keras_cache_dir() / VGG16_FILENAME
    if assets.locate("vgg16_weights") is None and keras_copy.is_file():
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


#: md5 of ``imagenet_class_index.json`` as Keras checks it in ``keras.applications.imagenet_utils``.
IMAGENET_INDEX_MD5 = "c2c37ea517e94d9795004a39431a14cb"


@functools.cache
def imagenet_classes() -> tuple[tuple[str, str], ...]:
    """The 1,000 ImageNet classes as (WordNet id, short name), indexed like VGG16's output.

    Read from ``imagenet_class_index.json`` shipped inside this package: byte for byte the table
    Keras downloads (Apache-2.0, the Keras authors; same md5, checked by the tests), so it works
    offline and needs no extra library.
    """
    text = resources.files(__package__).joinpath("imagenet_class_index.json").read_text("utf-8")
    table = json.loads(text)
    return tuple((table[str(i)][0], table[str(i)][1]) for i in range(1000))


def class_name(index: int) -> str:
    """Readable ImageNet class name, e.g. 895 -> 'warplane', 157 -> 'papillon'."""
    return imagenet_classes()[int(index)][1].replace("_", " ")


def preprocess_vgg16(pixels: np.ndarray) -> np.ndarray:
    """(n, 224, 224, 3) RGB in [0, 255] -> VGG16 input (BGR, ImageNet mean subtracted)."""
    return keras.applications.vgg16.preprocess_input(np.array(pixels, dtype=np.float32, copy=True))


def predict_probs(model: keras.Model, pixels: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """Softmax probabilities (n, 1000) for RGB images (n, 224, 224, 3) in [0, 255]."""
    return predict_batches(model, preprocess_vgg16(pixels), batch_size)


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
CXR_RECIPE_VERSION = 2  # 2: batches read per step by TrainingRows (1: one fitted copy)
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


class EpochProgress(keras.callbacks.Callback):
    """A tqdm bar over epochs (a widget in JupyterLab/Colab, text in a terminal) with the losses.

    ``fit(verbose=0)`` stays quiet per batch; this shows one step per epoch, so a learner sees
    that a several-minute training is moving and when early stopping ends it.
    """

    def __init__(self, epochs: int, desc: str = "training"):
        super().__init__()
        self.epochs, self.desc, self.bar = epochs, desc, None

    def on_train_begin(self, logs=None):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.epochs, desc=self.desc, unit="epoch", leave=False)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()
                              if k in ("loss", "val_loss", "val_accuracy")}, refresh=False)
        self.bar.update(1)

    def on_train_end(self, logs=None):
        if self.bar is not None:
            self.bar.close()


class TrainingRows(keras.utils.PyDataset):
    """The training batches of ``images[rows]``, read one batch per step (no copy of the rows).

    ``images``: (n, H, W, C) float32 array, or any object indexed like one (e.g. a
    :class:`course_utils.data.RowwiseImages`, whose rows are made when read); ``labels``:
    (n,) 0/1; ``rows``: (m,) int row indices to train on. Each epoch visits every row once, in
    the order ``default_rng((seed, epoch)).permutation(rows)``, so a seed gives the same
    batches on every machine; the indices inside a batch are sorted (reading in order is
    faster, and the batch mean does not depend on order). ``keras.Model.fit(..., shuffle=False)``
    calls :meth:`on_epoch_end`, which moves to the next epoch's order.

    Why not ``fit(images[rows], ...)``: that copy is 7,200 x 128 x 128 float32 = 470 MB, which
    Keras then copies again into its own tensors (measured: training peak +1.28 GiB with the
    copies, +0.45 GiB reading batches).
    """

    def __init__(self, images, labels: np.ndarray, rows: np.ndarray, *, batch_size: int = 64,
                 seed: int = config.SEED):
        super().__init__(workers=1, use_multiprocessing=False)
        self.images, self.labels = images, np.asarray(labels, np.float32)
        self.rows = np.asarray(rows, np.int64)
        if self.rows.ndim != 1 or not len(self.rows):
            raise ValueError(f"rows must be a non-empty 1-D index array, got shape {self.rows.shape}")
        self.batch_size, self.seed, self.epoch = int(batch_size), int(seed), 0
        self.order = self._order()

    def _order(self) -> np.ndarray:
        return np.random.default_rng((self.seed, self.epoch)).permutation(self.rows)

    def __len__(self) -> int:
        return -(-len(self.rows) // self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        batch = np.sort(self.order[index * self.batch_size:(index + 1) * self.batch_size])
        return (np.asarray(self.images[batch], np.float32), self.labels[batch])

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()


def train_cxr_model(images: np.ndarray, labels: np.ndarray, *, seed: int = config.SEED,
                    epochs: int | None = None, batch_size: int = 64,
                    validation_fraction: float = 0.1, learning_rate: float = 1e-3,
                    patience: int = 3, architecture: str = "cnn",
                    rows: np.ndarray | None = None, progress: bool = True,
                    ) -> tuple[keras.Model, dict[str, list[float]], float]:
    """Train a model of :data:`ARCHITECTURES` (default: :func:`build_cxr_cnn`) with Adam and
    binary cross-entropy (as the article did).

    ``images``: (n, H, W, 1) float32 in [0, 1]; ``labels``: (n,) with 1 = COVID. A stratified
    ``validation_fraction`` of them is held out for early stopping (best weights restored).
    ``rows``: train on these rows of ``images``/``labels`` only (e.g. a data set's training
    split) — the same model as passing ``images[rows], labels[rows]``, without that copy.
    Batches are read per step by :class:`TrainingRows` (seeded order per epoch).
    ``progress``: show a progress bar over epochs (:class:`EpochProgress`).
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
    batches = TrainingRows(images, labels, fit_idx, batch_size=batch_size, seed=seed)
    hist = model.fit(batches, epochs=epochs, shuffle=False, verbose=0,
                     validation_data=(np.asarray(images[val_idx], np.float32),
                                      labels[val_idx].astype("float32")),
                     callbacks=[stop, *([EpochProgress(epochs, f"training ({architecture})")]
                                        if progress else [])])
    seconds = time.perf_counter() - start
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    return model, history, seconds


def predict_p(model: keras.Model, inputs: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """p(positive class) of a model with one sigmoid output: (n,) float32 in [0, 1].

    The one way the package turns a binary model's output into probabilities: for images
    (n, H, W, C), e.g. p(COVID), and for table rows (n, d) alike. ``batch_size`` 64, as in
    training: TensorFlow keeps the memory of the largest batch's activations for the rest of
    the session (measured for the course CNN at 128 px, 800 images: +0.65 GB at 256, +0.2 GB
    at 64, equally fast).
    """
    return predict_batches(model, inputs, batch_size).reshape(-1)


def predict_batches(model: keras.Model, inputs: np.ndarray, batch_size: int) -> np.ndarray:
    """The model's outputs (n, k) float32 for ``inputs`` (n, ...), ``batch_size`` rows per call.

    Each call is ``predict_on_batch``: the same compiled function and numbers as
    ``model.predict``, without its per-call set-up (measured on 114 table rows: 50 ms for
    ``predict``, 1 ms here), which dominated loops of small predictions (permutation
    importance, perturbation curves). Inputs are read a batch at a time (a lazy array works).
    """
    n = len(inputs)
    if n == 0:
        return np.zeros((0,) + tuple(model.output_shape[1:]), np.float32)
    return np.concatenate([np.asarray(model.predict_on_batch(_floats(inputs[sl])), np.float32)
                           for sl in _checks.batches(n, batch_size)])


def _floats(batch: np.ndarray) -> np.ndarray:
    """``batch`` as an array, float64 made float32 (what ``model.predict`` feeds the model)."""
    batch = np.asarray(batch)
    return batch.astype(np.float32) if batch.dtype == np.float64 else batch


def _save_atomically(model: keras.Model, meta: dict, path: Path) -> None:
    """Write ``path`` (.keras) and its ``.json`` via unique temporary names, then rename both.

    Unique names let several processes save at once; on any error (e.g. a full disk) the
    temporary files are removed and the error is raised; an existing cache is never damaged.
    """
    tag = f"{os.getpid()}.{time.monotonic_ns()}"
    tmp = path.with_name(f".{path.stem}.{tag}.partial.keras")
    tmp_meta = path.with_name(f".{path.stem}.{tag}.partial.json")
    try:
        model.save(tmp)
        tmp_meta.write_text(json.dumps(meta), encoding="utf-8")
        os.replace(tmp_meta, path.with_suffix(".json"))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        tmp_meta.unlink(missing_ok=True)


def _load_cached_cxr(name: str, settings: dict) -> TrainedCXR | None:
    """The cached model ``name`` from the data folder or the user cache, or None.

    A cached pair that cannot be used — a truncated or foreign ``.keras`` file, a broken
    ``.json``, settings that do not match, a file Keras cannot load — is moved aside as
    ``*.corrupt`` (left in place, and ignored, in a folder this user cannot write) with a note,
    and None is returned, so the caller trains again.
    """
    for folder in config.read_dirs("models"):
        path = folder / f"{name}.keras"
        meta_path = path.with_suffix(".json")
        if not (path.exists() and meta_path.exists()):
            continue
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("settings", settings) != settings:
                raise ValueError("it was trained with other settings")
            model = keras.models.load_model(path)
            return TrainedCXR(model, meta["history"], path, False, meta["seconds"], settings)
        except Exception as e:  # noqa: BLE001 - zip, h5, json and Keras errors alike
            why = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
            try:
                for p in (path, meta_path):
                    p.replace(p.with_name(p.name + ".corrupt"))
                what = "moved aside (*.corrupt)"
            except FileNotFoundError:
                what = "moved aside by another process"
            except OSError:
                what = "left in place (read-only folder) and ignored"
            print(f"note: the cached model {path} could not be used ({why}); {what}. "
                  "Training it again.", flush=True)
    return None


def load_or_train_cxr_model(data, *, seed: int = config.SEED, epochs: int | None = None,
                            retrain: bool = False, architecture: str = "cnn") -> TrainedCXR:
    """A chest X-ray model for ``data`` (a :class:`course_utils.data.CourseCXR`), cached on disk.

    ``architecture``: a key of :data:`ARCHITECTURES` (default: the course CNN). The cache key
    covers the data (its fingerprint), the architecture, the seed, the epochs and the recipe
    version, so changing any of them trains a new model. The model file is written to a
    temporary name and renamed, so an interrupted save never leaves a broken cache; a damaged
    cache is set aside and the model trained again. Several processes (a classroom sharing one
    data folder) train a model once: the others wait for it and load it. A shared folder that
    is read-only for this user is read; new models then go to the user's own cache.
    """
    _builder(architecture)  # unknown names fail before any work
    epochs = epochs if epochs is not None else config.pick(*CXR_EPOCHS)
    settings = {"data": data.fingerprint, "source": data.source, "seed": seed, "epochs": epochs,
                "recipe": CXR_RECIPE_VERSION}
    if architecture != "cnn":  # the course CNN's key predates the argument: keep its caches valid
        settings["architecture"] = architecture
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    name = f"cxr_{architecture}_{data.source}_{key}"
    if not retrain and (cached := _load_cached_cxr(name, settings)) is not None:
        return cached
    if not retrain and (why := stage.explain_miss(settings)):
        print(why, flush=True)
    folder = config.writable_dir("models")
    path = folder / f"{name}.keras"
    lock = FileLock(str(folder / f".{name}.lock"), mode=0o666)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"Another process is training this model ({name}); waiting for it to finish ...",
              flush=True)
        lock.acquire()
    try:
        if not retrain and (cached := _load_cached_cxr(name, settings)) is not None:
            print("... it did: loaded the model it saved.")
            return cached
        model, history, seconds = train_cxr_model(data.images, data.labels, seed=seed,
                                                  epochs=epochs, architecture=architecture,
                                                  rows=data.train_idx)
        meta = {"history": history, "seconds": seconds, "settings": settings,
                "keras": keras.__version__}
        try:
            _save_atomically(model, meta, path)
        except OSError as e:
            print(f"note: the trained model could not be cached in {folder} ({e.strerror or e}); "
                  "it is used now but will be trained again next time. Free some disk space or "
                  "set COURSE_DATA_DIR to a folder with room.")
    finally:
        lock.release()
    return TrainedCXR(model, history, path, True, seconds, settings)
