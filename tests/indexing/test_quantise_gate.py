"""The int8 gate: it serves int8 only when int8 follows fp32 closely on catalogue photos it was not calibrated on.

With `random` weights every embedding lies within cos 0.998 of every other, so a random model's
figures say little: these tests check that the gate computes and acts on them, and that it
catches a quantisation broken on purpose. The default thresholds are for real weights.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from indexing.__main__ import format_summary
from indexing.build import BuildPlan, BuildSummary, build_index
from indexing.catalog import scan_catalog
from indexing.quantise_gate import GateThresholds, measure, split_sample, top_k_overlap
from lookalike.catalog.layout import read_manifest
from lookalike.catalog.manifest import Preprocessing
from lookalike.vision.int8_engine import file_sha256
from lookalike.vision.int8_export import quantise
from tests.conftest import int8_test_options


def broken_quantiser(network: Path, prep: Preprocessing, calibration: Sequence[np.ndarray], out: Path) -> str:
    """A real quantisation whose per-channel weight scales are then scrambled, as a bad calibration might."""
    quantise(network, prep, calibration, out)
    model = onnx.load(str(out))
    rng = np.random.default_rng(0)
    for initializer in model.graph.initializer:
        if initializer.name.endswith("_scale") and len(initializer.dims) == 1 and initializer.dims[0] > 1:
            scales = numpy_helper.to_array(initializer)
            scrambled = (scales * rng.uniform(0.05, 20, scales.shape)).astype(scales.dtype)
            initializer.CopyFrom(numpy_helper.from_array(scrambled, initializer.name))
    onnx.save(model, str(out))
    return file_sha256(out)


@pytest.fixture(scope="module")
def broken(small_catalog: Path, random_weights_file: Path, tmp_path_factory: pytest.TempPathFactory) -> BuildSummary:
    return build_index(BuildPlan(small_catalog, tmp_path_factory.mktemp("broken"), str(random_weights_file),
                                 precision="auto", int8=int8_test_options(quantiser=broken_quantiser)))


def test_calibration_and_gate_photos_are_disjoint_and_spread_over_categories(small_catalog: Path) -> None:
    entries = scan_catalog(small_catalog).entries
    calibration, held_out = split_sample(entries, 10, 15)
    assert len(calibration) == 10 and len(held_out) == 15
    assert not {e.file for e in calibration} & {e.file for e in held_out}
    assert {e.category for e in held_out} == {e.category for e in entries}
    assert {e.category for e in calibration} == {e.category for e in entries}
    assert split_sample(entries, 10, 15) == (calibration, held_out)  # the same photos every run


def test_identical_embeddings_pass_and_scrambled_ones_fail_each_figure_in_words() -> None:
    rng = np.random.default_rng(0)
    categories = [c for c in "abc" for _ in range(40)]  # well above 10 each, or every top-10 overlaps
    centres = {c: rng.normal(size=64) * 3 for c in "abc"}
    fp32 = np.stack([centres[c] + rng.normal(size=64) for c in categories])
    fp32 /= np.linalg.norm(fp32, axis=1, keepdims=True)
    same = measure(fp32, fp32.copy(), categories, GateThresholds())
    assert same.passed and same.failures == [] and same.mean_cosine == pytest.approx(1.0)
    assert same.top10_overlap == 1.0 and same.head_agreement == 1.0

    noise = rng.normal(size=fp32.shape)
    scrambled = noise / np.linalg.norm(noise, axis=1, keepdims=True)
    bad = measure(fp32, scrambled, categories, GateThresholds())
    assert not bad.passed
    assert [re.sub(r" -?[\d.]+ < .*", "", f) for f in bad.failures] == ["mean cosine", "top10 overlap",
                                                                        "head agreement"]


def test_the_top10_overlap_counts_shared_neighbours_within_each_category() -> None:
    a = np.eye(4, dtype=np.float32)[[0, 1, 2, 3]] + 0.1
    assert top_k_overlap(a, a, ["x", "x", "y", "y"]) == 1.0


def test_a_good_quantisation_passes_and_is_served(int8_index: Path) -> None:
    manifest = read_manifest(int8_index / "current")
    assert manifest.int8 is not None
    gate = manifest.int8.gate
    assert gate.passed, gate.failures
    assert gate.mean_cosine >= 0.98 and gate.top10_overlap >= 0.9  # the figures random weights can be judged by
    assert manifest.model.precision == "int8" and manifest.requested_precision == "auto"
    assert (int8_index / "current" / manifest.int8.file).is_file()
    assert manifest.int8.sha256 == file_sha256(int8_index / "current" / manifest.int8.file)
    assert sum(manifest.int8.calibration_images.values()) == 10 and len(manifest.int8.calibration_images) == 5
    assert "int8 gate" in manifest.compatibility


def test_a_broken_quantisation_is_rejected_and_the_job_falls_back_saying_why(broken: BuildSummary) -> None:
    manifest = read_manifest(broken.version_dir)
    assert manifest.int8 is not None and not manifest.int8.gate.passed
    assert manifest.int8.gate.mean_cosine < 0.98
    assert manifest.model.precision == "fp32" and broken.precision == manifest.model.precision
    assert "gate failed" in manifest.precision_reason and "mean cosine" in manifest.precision_reason
    summary = format_summary(broken)
    assert "int8 gate FAILED" in summary and "below threshold: mean cosine" in summary


def test_precision_int8_forces_a_failed_model_but_says_so_loudly(small_catalog: Path, random_weights_file: Path,
                                                                  tmp_path: Path) -> None:
    forced = build_index(BuildPlan(small_catalog, tmp_path, str(random_weights_file), precision="int8",
                         int8=int8_test_options(quantiser=broken_quantiser)))
    assert forced.precision == "int8" and read_manifest(forced.version_dir).model.precision == "int8"
    assert any("forced although its gate failed" in w for w in forced.warnings)
    assert "!!! int8 forced although its gate failed" in format_summary(forced)
