"""Repository-wide pytest hooks.

nbval compares notebook outputs only in cells that were executed in the committed file;
ours are committed stripped, so the checks are the notebooks' ``assert`` cells. stderr
(TensorFlow and tqdm chatter) is never compared (nbval issue #88).
"""


def pytest_collectstart(collector):
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr",)
