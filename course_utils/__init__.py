"""Helper package of the course *Saliency Maps in Medical Imaging*.

Notebooks start with ``course_utils.setup()``: it silences TensorFlow's log noise, seeds
every random generator and prints the facts a learner (or an instructor debugging a
workshop laptop) needs: versions, fast mode, where data lives, online or offline.

Modules, by concept (a one-way import graph; ``_checks`` is private):
``config``, ``environment``, ``assets``, ``images``, ``paper`` (set-up, downloads, the
articles' numbers); ``phantom``, ``cxr``, ``data`` (chest X-ray data); ``models`` (VGG16, the
CXR CNNs, ``predict_p``); ``saliency`` (the registry of methods, ``compute``, ``explainer``);
``faithfulness`` (deletion/insertion, ROAD, the random-map baseline);
``metrics`` (similarity, regions, localisation, robustness, classifier evaluation); ``stats``
(bootstrap, ``Estimate``, paired model comparison); ``perturb`` (noise, attacks, visibility,
the reader quiz); ``psc`` (prediction-saliency correlation); ``sanity`` (sanity checks of
maps); ``tabular`` (saliency on a table); ``shortcuts`` (source-shortcut checks: film
statistics, accuracy by source); ``plots`` (one style, every figure); ``exercises`` (the
notebooks' exercises and a checker that never reveals the answer); ``tasks`` and
``render`` (the command line: ``python -m course_utils test|course|lab``, standard library
only until the venv exists).

Vocabulary, used the same way in every module:

* ``images`` -- a batch (n, H, W, C); one image is ``images[i]``; a table is ``x`` (n, d).
* ``maps`` -- saliency maps (n, H, W); *raw* maps are in the method's units, *normalised*
  maps are min-max scaled to [0, 1] for the eye.
* ``labels`` -- class labels only (0/1 for a binary model); ``targets`` -- the class a map
  explains; ``names`` -- display names (``saliency.NAMES``, ``metrics.MEASURES``).
* ``method`` -- a saliency method's id (a key of ``saliency.METHODS``); ``settings`` -- a
  method's own parameters (e.g. ``smooth_samples``); an ``explainer`` is a method with its
  settings fixed (``explain(images, targets) -> maps``).
* ``p`` -- probability of the positive class, (n,), from ``models.predict_p``.
* ``Estimate`` -- a value with its confidence interval, formatted as "value (lo–hi)".

Tables are computed with ids and get display names last (``plots.named``). Docstrings follow
the Google style; ``ruff`` checks the package, the tests and the notebooks.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with the process's stderr (file descriptor 2) silenced.

    TensorFlow's C++ start-up lines (absl's "All log messages before absl::InitializeLog()",
    CPU-feature notices) ignore ``TF_CPP_MIN_LOG_LEVEL`` and would open every notebook with red
    noise. Python errors still propagate; only the C++ chatter of the import is dropped.
    """
    import sys

    if "tensorflow" in sys.modules:
        return
    try:
        saved = os.dup(2)
    except OSError:  # no usable stderr (some embedded hosts): import normally
        import tensorflow  # noqa: F401
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def setup(seed: int | None = None, *, verbose: bool = True) -> dict[str, object]:
    """Standard first cell: quiet logs, seed everything, set the plot style, report the setup.

    On Linux it caps glibc's malloc arenas (:func:`course_utils.environment.limit_malloc_arenas`)
    and, in a notebook, has freed memory returned to the system after every cell
    (:func:`course_utils.environment.trim_memory_after_cells`): a laptop then sees the
    memory a notebook holds, not its threads' leftovers.

    Returns the facts printed (a dict) so notebooks can assert on them.
    """
    import logging
    import warnings

    from . import environment

    environment.limit_malloc_arenas()  # before TensorFlow's thread pools exist
    import_tensorflow_quietly()
    import keras

    from . import config, plots

    warnings.filterwarnings("ignore", message=r"The structure of `inputs`", category=UserWarning)
    # notebooks call several models: hide TensorFlow's Python-side re-tracing notices
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    keras.utils.disable_interactive_logging()  # no progress bars from predict()/fit() in cells
    config.set_seed(config.SEED if seed is None else seed)
    plots.use_style()
    environment.trim_memory_after_cells()  # a kernel's memory = what it holds, not its past peaks
    info = environment.summary(check_network=False)
    if verbose:
        print(environment.format_summary(info))
    return info
