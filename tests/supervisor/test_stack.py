"""`make run`'s supervisor: builds a missing index, starts all three, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from lookalike.catalog.layout import IndexLayout, read_manifest
from tests.support import REPO, free_port


def test_it_builds_the_index_serves_and_stops_everything_on_ctrl_c(small_catalog: Path, tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("GATEWAY_PORT", "CLASSIFIER_PORT", "SIMILARITY_PORT")}
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "CATALOG": str(small_catalog),
           "INDEX": str(tmp_path / "index"), "WEIGHTS": "random", "PRECISION": "fp32"}
    log = open(tmp_path / "stack.log", "wb")
    stack = subprocess.Popen([sys.executable, "-m", "supervisor.stack"], cwd=REPO, env=env, stdout=log,
                             stderr=subprocess.STDOUT)
    gateway = f"http://127.0.0.1:{ports['GATEWAY_PORT']}"
    try:
        deadline = time.monotonic() + 180
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
        children = subprocess.run(["pgrep", "-P", str(stack.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) == 3
        stack.send_signal(signal.SIGINT)
        assert stack.wait(timeout=60) == 0
        time.sleep(0.5)
        alive = [pid for pid in children if Path(f"/proc/{pid}").exists()
                 and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]]
        assert alive == []
    finally:
        if stack.poll() is None:
            stack.kill()
    output = (tmp_path / "stack.log").read_text()
    assert "Indexed 30 images" in output and "ready: open" in output
    manifest = read_manifest(IndexLayout(tmp_path / "index").require_current())  # the demo index measured itself
    assert manifest.self_eval is not None and manifest.self_eval.weights == "random"
    assert "Self-evaluation:" in output and "random weights" in output
