"""Memory hygiene for laptops: freed memory goes back to the system after every notebook cell."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from course_utils import environment

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")

FRAGMENT = """
import numpy as np, psutil
from course_utils import environment
proc = psutil.Process()
blocks = [np.ones(12_500) for _ in range(3000)]  # 300 MB in 100 kB arrays: on glibc's heap
pins = [blocks[i] for i in range(0, 3000, 100)] + [np.ones(10)]  # the heap's top cannot shrink
del blocks
held = proc.memory_info().rss
{release}
print((held - proc.memory_info().rss) / 1e6)
"""


@linux
def test_freed_memory_is_returned_only_when_asked():
    def returned(release: str) -> float:
        out = subprocess.run([sys.executable, "-c", FRAGMENT.format(release=release)],
                             capture_output=True, text=True, check=True)
        return float(out.stdout.split()[-1])

    assert returned("pass") < 50  # glibc keeps what the arrays freed
    assert returned("assert environment.return_freed_memory()") > 200  # MB back to the system


ARENAS = """
import ctypes, sys, threading
from course_utils import environment
if {limit}:
    assert environment.limit_malloc_arenas()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
start = threading.Barrier(8)
def work():  # ctypes releases the GIL, so eight threads allocate at once, as TensorFlow's do
    start.wait()
    blocks = [libc.malloc(4096) for _ in range(2000)]
    for b in blocks:
        libc.free(b)
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
libc.malloc_stats()  # one "Arena N:" block per arena, on stderr
"""


@linux
def test_malloc_arenas_are_capped_only_when_asked():
    def arenas(limit: bool) -> int:
        # without the cap the course's tasks set (tasks.TASK_ENV): glibc's default
        env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
        out = subprocess.run([sys.executable, "-c", ARENAS.format(limit=limit)],
                             capture_output=True, text=True, check=True, env=env)
        return sum(line.startswith("Arena ") for line in out.stderr.splitlines())

    assert arenas(False) > environment.MALLOC_ARENAS  # glibc: a new arena per allocating thread
    assert arenas(True) <= environment.MALLOC_ARENAS


def test_malloc_arenas_reject_a_nonsense_limit():
    with pytest.raises(ValueError, match="arenas must be >= 1"):
        environment.limit_malloc_arenas(0)


def test_setup_trims_after_every_cell_once(monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    import course_utils

    capped = []
    monkeypatch.setattr(environment, "limit_malloc_arenas", lambda: capped.append(1) or True)
    shell = InteractiveShell.instance()
    try:
        course_utils.setup(verbose=False)
        course_utils.setup(verbose=False)  # a second first cell: still one callback
        assert capped == [1, 1]  # setup caps the arenas too
        callbacks = shell.events.callbacks["post_run_cell"]
        assert callbacks.count(environment._after_cell) == 1
        assert shell.run_cell("x = 1 + 1").success
    finally:
        if environment._after_cell in shell.events.callbacks["post_run_cell"]:
            shell.events.unregister("post_run_cell", environment._after_cell)
        InteractiveShell.clear_instance()


def test_outside_a_kernel_nothing_is_registered():
    assert environment.trim_memory_after_cells() is False


def test_course_tasks_start_kernels_with_the_same_arena_cap():
    """`make lab/course/test` set it from each kernel's start (setup()'s cap comes later)."""
    from course_utils import tasks

    assert tasks.TASK_ENV["MALLOC_ARENA_MAX"] == str(environment.MALLOC_ARENAS)
