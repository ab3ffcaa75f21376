"""The indexing job writes each version's text index and, with ImageNet weights, the photos' ImageNet tags.

No ImageNet weights can be downloaded here, so the tag path runs the real `Embedder` code around a
stand-in network that answers (pool5, logits) as the real one does, and says it is `imagenet`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from indexing.__main__ import format_summary
from indexing.build import BuildPlan, build_index
from indexing.imagenet_tags import top_tags
from lookalike.catalog.layout import SYNONYMS, TEXT_INDEX, IndexLayout
from lookalike.catalog.manifest import Preprocessing
from lookalike.catalog.text_index import TextIndex
from lookalike.contracts import ModelInfo
from lookalike.errors import SynonymsError
from lookalike.vision.embedder import Embedder
from lookalike.vision.network import imagenet_classes

STUDIO_COUCH, ROCKING_CHAIR = 831, 765


class StandInNetwork(nn.Module):
    """Pool5-like features from 8×8 average pooling; logits that always favour `studio couch`."""

    def __init__(self) -> None:
        super().__init__()
        self.project = nn.Linear(3 * 8 * 8, 2048)
        torch.nn.init.normal_(self.project.weight, generator=torch.Generator().manual_seed(0))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        features = self.project(nn.functional.adaptive_avg_pool2d(x, 8).flatten(1))
        logits = torch.zeros(x.shape[0], 1000)
        logits[:, STUDIO_COUCH], logits[:, ROCKING_CHAIR] = 6.0, 5.0
        return features, logits


class StandInEmbedder(Embedder):
    """Embedder's own batching, normalisation and ImageNet path, around the stand-in network."""

    def __init__(self, weights: str = "imagenet") -> None:
        self.preprocessing = Preprocessing()
        self.weights_spec, self.requested_precision = weights, "fp32"
        self.device, self.precision, self.dtype, self.fused = torch.device("cpu"), "fp32", torch.float32, False
        self._mean = torch.tensor(self.preprocessing.mean).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(self.preprocessing.std).view(1, 3, 1, 1) * 255
        self.network = self.eager = StandInNetwork()  # what the job exports to ONNX and embeds with
        self.info = ModelInfo(weights=weights, model_id=f"stand-in-{weights}")


@pytest.fixture
def catalog(small_catalog: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "catalog"
    shutil.copytree(small_catalog, copy)
    return copy


def test_top_tags_keep_the_likeliest_classes_above_the_threshold() -> None:
    probabilities = np.array([[0.01, 0.7, 0.2, 0.09], [0.25, 0.25, 0.25, 0.25]])
    assert top_tags(probabilities, ["a", "b", "c", "d"], top=2) == [[("b", 0.7), ("c", 0.2)], [("a", 0.25), ("b", 0.25)]]
    assert top_tags(probabilities, ["a", "b", "c", "d"], min_probability=0.5) == [[("b", 0.7)], []]


def test_the_class_names_come_from_torchvision_without_a_download() -> None:
    classes = imagenet_classes()
    assert len(classes) == 1000 and classes[STUDIO_COUCH] == "studio couch"


def test_imagenet_weights_write_each_photos_tags_from_the_same_forward_pass(catalog: Path, tmp_path: Path) -> None:
    embedder = StandInEmbedder()
    summary = build_index(BuildPlan(catalog, tmp_path / "index", embedder=embedder, batch_size=8))
    assert summary.tagged == summary.indexed == 30
    # torch ran the stand-in once, to export it; ONNX Runtime then gave each pass's embeddings and tags together
    assert embedder.network.calls == 1
    assert "ImageNet tags: 30 photos tagged" in format_summary(summary)
    text = TextIndex.load(summary.version_dir)
    assert text is not None
    tags = text.tags(0)
    assert [tag for tag, _ in tags] == ["studio couch", "rocking chair"]
    assert tags[0][1] == pytest.approx(np.exp(6) / (np.exp(6) + np.exp(5) + 998), abs=1e-3)
    found = text.search(text.parse("studio couch"), 100)
    assert len(found) == 30 and all("imagenet_tags" in m.matched for m in found)


def test_tags_of_cached_photos_come_back_from_the_cache(catalog: Path, tmp_path: Path) -> None:
    build_index(BuildPlan(catalog, tmp_path / "index", embedder=StandInEmbedder()))
    again = StandInEmbedder()
    summary = build_index(BuildPlan(catalog, tmp_path / "index", embedder=again))
    assert summary.reused == 30 and summary.embedded == 0 and summary.tagged == 30
    assert again.network.calls == 1  # the export's trace: every version carries the graph the classifier serves


def test_random_weights_write_no_tags_and_the_job_says_they_were_skipped(catalog: Path, tmp_path: Path) -> None:
    summary = build_index(BuildPlan(catalog, tmp_path / "index", embedder=StandInEmbedder("random")))
    assert summary.tagged is None
    assert "ImageNet tags: skipped, the random weights know no ImageNet classes" in format_summary(summary)
    text = TextIndex.load(summary.version_dir)
    assert text is not None and text.tags(0) == []
    assert (summary.version_dir / TEXT_INDEX).is_file()


def test_a_store_synonyms_file_travels_with_its_version_and_a_bad_one_stops_the_job(catalog: Path,
                                                                                      tmp_path: Path) -> None:
    embedder = StandInEmbedder("random")
    (catalog / SYNONYMS).write_text("couch => lamp\n")
    summary = build_index(BuildPlan(catalog, tmp_path / "index", embedder=embedder))
    assert (summary.version_dir / SYNONYMS).read_text() == "couch => lamp\n"
    assert "synonyms: synonyms.txt from the catalogue" in format_summary(summary)
    (catalog / SYNONYMS).write_text("couch =>\n")
    with pytest.raises(SynonymsError, match="line 1"):
        build_index(BuildPlan(catalog, tmp_path / "index", embedder=embedder))
    assert IndexLayout(tmp_path / "index").current() == summary.version_dir


def test_text_columns_and_weights_are_the_stores_to_choose(catalog: Path, tmp_path: Path) -> None:
    summary = build_index(BuildPlan(catalog, tmp_path / "index", embedder=StandInEmbedder("random"),
                          text_weights={"name": 20, "source": 1}))
    fields = {f.name: f.weight for f in summary.text_fields}
    assert fields["name"] == 20 and "license" not in fields and "source" not in fields  # excluded by default
    summary = build_index(BuildPlan(catalog, tmp_path / "index", embedder=StandInEmbedder("random"),
                          text_weights={"source": 1}, text_exclude=frozenset({"license"})))
    assert {f.name: f.weight for f in summary.text_fields}["source"] == 1
