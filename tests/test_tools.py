"""tools/: the scripts around the package do what their headers say."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.conftest import REPO_ROOT, run_script


def test_convert_sh_says_what_it_did_for_each_checkpoint(tmp_path, weights_home):
    # rgb_scratch is in the cache already; flow_scratch is in no mirror and the release cannot be reached.
    env = {**os.environ, "I3D_HOME": str(weights_home), "I3D_RELEASE_URL": "http://127.0.0.1:9",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(REPO_ROOT / "tools" / "convert.sh"), "--mirror", str(tmp_path),
                             "rgb_scratch", "flow_scratch"], capture_output=True, text=True, env=env, check=False)
    lines = result.stdout.splitlines()
    assert result.returncode == 3, result.stderr[-2000:]
    assert lines[0] == f"rgb_scratch: already converted, {weights_home / 'weights' / 'rgb_scratch.safetensors'}"
    assert lines[1].startswith("flow_scratch: not converted: could not get the flow_scratch weights")
    assert lines[2] == "1 of 2 release checkpoints are in the cache"


def test_compare_with_tensorflow_prints_both_outputs_and_their_difference(tmp_path):
    clip = np.random.default_rng(0).uniform(-1, 1, (1, 9, 193, 193, 3)).astype(np.float32)
    np.save(tmp_path / "clip.npy", clip)
    result = run_script("tools/compare_with_tensorflow.py", "--clip", str(tmp_path / "clip.npy"), "--top", "5")
    assert result.returncode == 0, result.stderr[-3000:]
    sections = re.split(r"^== ", result.stdout, flags=re.MULTILINE)[1:]
    assert [section.split(":")[0] for section in sections] == ["TensorFlow", "PyTorch (converted)"]
    tops = [[line.split(" ", 2)[2] for line in section.splitlines()[4:9]] for section in sections]
    assert tops[0] == tops[1] and len(tops[0]) == 5  # the same five classes, in the release's line format
    difference = float(re.search(r"max \|logit difference\|: (\S+)", result.stdout).group(1))
    assert difference < 1e-4 and "top 5 classes in the same order: yes" in result.stdout
