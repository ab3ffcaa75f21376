"""`make run`'s supervisor: builds a missing index, starts all three (and a local Milvus for VECTOR_STORE=milvus),
serves the page, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lookalike.catalog.layout import IndexLayout, read_manifest
from supervisor.stack import why_build
from tests.support import REPO, free_port


@pytest.mark.parametrize("vector_store", ["faiss", "milvus"])
def test_it_builds_the_index_serves_the_page_and_stops_everything_on_ctrl_c(
        vector_store: str, small_catalog: Path, tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("GATEWAY_PORT", "CLASSIFIER_PORT", "SIMILARITY_PORT", "MILVUS_PORT")}
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "CATALOG": str(small_catalog),
           "INDEX": str(tmp_path / "index"), "WEIGHTS": "random", "PRECISION": "fp32", "VECTOR_STORE": vector_store}
    env.pop("MILVUS_URI", None)  # unset: `make run` starts a Milvus of its own, beside the index
    log = open(tmp_path / "stack.log", "wb")
    stack = subprocess.Popen([sys.executable, "-m", "supervisor.stack"], cwd=REPO, env=env, stdout=log,
                             stderr=subprocess.STDOUT)
    gateway = f"http://127.0.0.1:{ports['GATEWAY_PORT']}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(gateway + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert stack.poll() is None, (tmp_path / "stack.log").read_text()
            time.sleep(0.5)
        else:
            raise AssertionError("the stack did not become ready")
        page = httpx.get(gateway + "/", timeout=10)
        assert page.status_code == 200 and "<form" in page.text
        photo = next((small_catalog / "chair").glob("*.jpg")).read_bytes()
        found = httpx.post(gateway + "/api/v1/search", files={"image": ("chair.jpg", photo, "image/jpeg")}, timeout=60)
        assert found.status_code == 200 and found.json()["results"]
        children = subprocess.run(["pgrep", "-P", str(stack.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) == (4 if vector_store == "milvus" else 3)  # the services, and Milvus
        stack.send_signal(signal.SIGINT)
        assert stack.wait(timeout=90) == 0
        time.sleep(0.5)
        alive = [pid for pid in children if Path(f"/proc/{pid}").exists()
                 and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]]
        assert alive == []
        milvus_left = subprocess.run(["pgrep", "-f", str(tmp_path / "milvus")], capture_output=True, text=True).stdout
        assert milvus_left == ""  # the server Milvus's wrapper started went too
    finally:
        if stack.poll() is None:
            stack.kill()
    output = (tmp_path / "stack.log").read_text()
    assert "Indexed 30 images" in output and "ready: open" in output
    manifest = read_manifest(IndexLayout(tmp_path / "index").require_current())  # the demo index measured itself
    assert (manifest.vector_store.kind if manifest.vector_store else "faiss") == vector_store
    assert manifest.self_eval is not None and manifest.self_eval.weights == "random"
    assert "Self-evaluation:" in output and "random weights" in output


def test_it_builds_a_version_when_there_is_none_or_the_served_one_keeps_its_vectors_in_the_other_store(
        built_index: Path, tmp_path: Path) -> None:
    assert why_build(tmp_path / "none", "faiss") == f"no index at {tmp_path / 'none'}"
    assert why_build(built_index, "faiss") is None
    assert why_build(built_index, "milvus") == (
        f"the index at {built_index} keeps its vectors in faiss, and VECTOR_STORE=milvus")
