"""Memory hygiene for laptops: freed memory goes back to the system after every notebook cell."""
from __future__ import annotations

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


def test_setup_trims_after_every_cell_once():
    from IPython.core.interactiveshell import InteractiveShell

    import course_utils

    shell = InteractiveShell.instance()
    try:
        course_utils.setup(verbose=False)
        course_utils.setup(verbose=False)  # a second first cell: still one callback
        callbacks = shell.events.callbacks["post_run_cell"]
        assert callbacks.count(environment._after_cell) == 1
        assert shell.run_cell("x = 1 + 1").success
    finally:
        if environment._after_cell in shell.events.callbacks["post_run_cell"]:
            shell.events.unregister("post_run_cell", environment._after_cell)
        InteractiveShell.clear_instance()


def test_outside_a_kernel_nothing_is_registered():
    assert environment.trim_memory_after_cells() is False
