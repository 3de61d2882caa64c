"""Models of the course: VGG16 on ImageNet (notebook 01) and the chest X-ray CNN (02-05).

VGG16's ImageNet weights (528 MB) are looked for, in order, in an explicit path, the
``COURSE_VGG16_WEIGHTS`` variable, the course cache, and the Keras cache
(``~/.keras/models``, or ``$KERAS_HOME/models``); then downloaded. If none of that works the
same architecture is built with seeded random weights and :class:`VGG16Bundle` says so
(``trained=False``) so that every table and figure can be labelled *untrained*.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from . import assets, config
from .cxr_model import build_cxr_cnn  # noqa: F401  (re-exported: models is the public home)

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
