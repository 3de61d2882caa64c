"""Tests for metrics.class_contrast_verdict (maps for a near and a distant class; no TensorFlow)."""
from __future__ import annotations

import pytest

from course_utils import metrics


@pytest.mark.parametrize("near, far, words", [
    (0.95, 0.9, "not the class"),                 # even the distant class: same map
    (0.7, 0.2, "depends on the class asked"),     # distant moves further
    (0.2, 0.6, "not in step"),                    # distant closer than the near class
    (0.4, 0.35, "about equally"),
    (float("nan"), 0.3, "undefined"),
])
def test_verdict_follows_the_numbers(near, far, words):
    text = metrics.class_contrast_verdict("Grad-CAM", near, far)
    assert text.startswith("Grad-CAM: ") and words in text
    if words != "undefined":
        assert f"{near:.2f}" in text and f"{far:.2f}" in text


def test_thresholds_are_parameters():
    assert "about equally" in metrics.class_contrast_verdict("m", 0.7, 0.62)
    assert "depends on the class asked" in metrics.class_contrast_verdict("m", 0.7, 0.62, margin=0.05)
    assert "not the class" in metrics.class_contrast_verdict("m", 0.7, 0.62, same=0.6)


def test_empty_distant_maps_are_named_not_hidden():
    all_empty = metrics.class_contrast_verdict("Grad-CAM", 0.8, float("nan"), far_empty=4, n=4)
    assert "empty (all zero) for all 4 images" in all_empty and "depends on the class asked" in all_empty
    some = metrics.class_contrast_verdict("Grad-CAM", 0.8, 0.3, far_empty=1, n=4)
    assert "1 of 4 distant maps empty, left out" in some and "depends on the class asked" in some
