"""Helper package of the course *Saliency Maps in Medical Imaging*.

Notebooks start with ``course_utils.setup()``: it silences TensorFlow's log noise, seeds
every random generator and prints the facts a learner (or an instructor debugging a
workshop laptop) needs: versions, fast mode, where data lives, online or offline.
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

    Returns the facts printed (a dict) so notebooks can assert on them.
    """
    import warnings

    import_tensorflow_quietly()
    import keras

    from . import config, environment, plots

    import logging

    warnings.filterwarnings("ignore", message=r"The structure of `inputs`", category=UserWarning)
    # notebooks call several models: hide TensorFlow's Python-side re-tracing notices
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    keras.utils.disable_interactive_logging()  # no progress bars from predict()/fit() in cells
    config.set_seed(config.SEED if seed is None else seed)
    plots.use_style()
    info = environment.summary(check_network=False)
    if verbose:
        print(environment.format_summary(info))
    return info
