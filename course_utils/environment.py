"""What this machine is: versions, devices, memory, fast/offline mode, cached assets."""
from __future__ import annotations

import importlib.metadata
import platform
import sys
from typing import Any

from . import assets, config

#: Packages the notebooks import (distribution names; TensorFlow is reported whichever build).
RUNTIME_PACKAGES = ("tensorflow", "keras", "tf-keras-vis", "numpy", "scipy", "scikit-learn",
                    "scikit-image", "matplotlib", "pandas")
#: Packages whose versions the course reports: the runtime ones and the tools (absent on Colab).
PACKAGES = RUNTIME_PACKAGES + ("jupyterlab", "nbval")


#: Distributions that install a package under another name (TensorFlow's CPU-only and macOS builds).
_BUILDS = {"tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-macos")}


def version(name: str) -> str:
    """Installed version of the package ``name`` (a distribution name), or 'missing'.

    TensorFlow is found whichever build provides it (:data:`_BUILDS`).
    """
    for dist in _BUILDS.get(name, (name,)):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "missing"


def package_versions() -> dict[str, str]:
    """Installed version of each package in :data:`PACKAGES` ('missing' if absent)."""
    return {name: version(name) for name in PACKAGES}


def devices() -> list[str]:
    """TensorFlow's physical devices, e.g. ['CPU:0'] (GPUs hidden by CUDA_VISIBLE_DEVICES='')."""
    import tensorflow as tf

    return [f"{d.device_type}:{d.name.rsplit(':', 1)[-1]}" for d in tf.config.list_physical_devices()]


def summary(check_network: bool = True) -> dict[str, object]:
    """Everything ``doctor`` reports, as a dict (the network probe is optional: it may wait 3 s)."""
    import psutil

    online = None if not check_network else assets.network_available()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": psutil.cpu_count(logical=True),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "devices": devices(),
        "packages": package_versions(),
        "fast_mode": config.fast_mode(),
        "offline_forced": config.offline_forced(),
        "online": online,
        "data_dir": str(config.data_dir()),
        "assets": assets.status(),
    }


def format_summary(info: dict[str, object]) -> str:
    """A short human-readable block of :func:`summary`'s facts."""
    pk = info["packages"]
    online = {None: "not checked", True: "yes", False: "no"}[info["online"]]
    present = [a["asset"] for a in info["assets"] if a["present"]]
    missing = [a["asset"] for a in info["assets"] if not a["present"]]
    return "\n".join([
        f"Python {info['python']} on {info['platform']}; {info['cpus']} CPUs, "
        f"{info['memory_gb']} GB RAM; devices: {', '.join(info['devices'])}",
        "Packages: " + ", ".join(f"{k} {v}" for k, v in pk.items()),
        f"Fast mode (COURSE_FAST): {'ON' if info['fast_mode'] else 'off'}; "
        f"offline forced (COURSE_OFFLINE): {'yes' if info['offline_forced'] else 'no'}; "
        f"network reachable: {online}",
        f"Data directory (COURSE_DATA_DIR): {info['data_dir']}",
        f"Assets cached: {', '.join(present) or 'none'}; not cached: {', '.join(missing) or 'none'}",
        *([FAST_MODE_NOTE] if info["fast_mode"] else []),
    ])


#: Printed by the first cell in fast mode: the numbers then come from a smoke-test run.
FAST_MODE_NOTE = ("NOTE: fast mode trains on less data for fewer epochs; it checks that the code runs. "
                  "Numbers and figures can differ from what the text discusses: unset COURSE_FAST "
                  "to take the course.")


#: glibc's ``mallopt`` parameter for the number of malloc arenas (``M_ARENA_MAX`` in malloc.h).
_M_ARENA_MAX = -8
#: Arenas the course allows: what ``MALLOC_ARENA_MAX=2`` sets (glibc's default is 8 per core).
MALLOC_ARENAS = 2


def _glibc() -> Any | None:
    """The process's C library through ctypes if it is glibc on Linux, else None."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim, libc.mallopt  # noqa: B018  (musl and other C libraries lack them)
    except (OSError, AttributeError):
        return None
    return libc


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Let glibc's allocator keep at most ``arenas`` heaps for the process's threads; True if set.

    glibc gives each new thread that allocates its own heap ("arena"), up to 8 per core, and
    memory freed in one arena is reused only by the threads of that arena. TensorFlow's thread
    pools spread a notebook's large temporary arrays over many arenas, so the kernel's resident
    memory grows with the number of threads, not with what it holds (notebook 03 from scratch:
    3.62 GB with the default, 3.56 GB with this call, 3.48 GB with ``MALLOC_ARENA_MAX=2`` from the
    kernel's start, which the course's tasks set; ``benchmarks/results.md``).
    Call it before TensorFlow starts its threads (:func:`course_utils.setup` does): arenas that
    exist already are kept. Does nothing on macOS, Windows or a Linux without glibc.
    """
    if arenas < 1:
        raise ValueError(f"arenas must be >= 1, got {arenas}")
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(_M_ARENA_MAX, arenas) == 1)


def return_freed_memory() -> bool:
    """Hand memory the process has freed back to the operating system; True if it could.

    NumPy and TensorFlow free large temporary arrays all the time, but glibc's allocator keeps
    the freed pages for reuse, so a Linux kernel's resident memory only ever grows (by 0.3-0.6
    GB in a notebook cell that predicts or computes maps for a whole test split). ``malloc_trim``
    returns them; it costs tens of milliseconds. Does nothing on macOS and Windows (other
    allocators) or a Linux without glibc.
    """
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def _after_cell(*_: object) -> None:
    return_freed_memory()


def trim_memory_after_cells() -> bool:
    """In a Jupyter/IPython kernel, call :func:`return_freed_memory` after every cell.

    What a learner's laptop sees as the notebook's memory is then what it holds, not what it
    once needed. Registered once however often it is called; False outside IPython.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    if _after_cell not in shell.events.callbacks["post_run_cell"]:
        shell.events.register("post_run_cell", _after_cell)
    return True
