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


def setup(seed: int | None = None, *, verbose: bool = True) -> dict[str, object]:
    """Standard first cell: quiet logs, seed everything, set the plot style, report the setup.

    Returns the facts printed (a dict) so notebooks can assert on them.
    """
    import warnings

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
