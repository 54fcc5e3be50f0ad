"""The repository's benchmarks run on any model and say what is missing in one line."""

import os

from conftest import REPO


def test_benchmarks_take_any_model_and_say_missing_data_in_one_line(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "RESNET_CIFAR_DATA": str(tmp_path / "nowhere"), "RESNET_CIFAR_URL": "http://127.0.0.1:9/x"}
    command = [sys.executable, str(REPO / "benchmarks" / "throughput.py"), "--model", "resnet20", "--steps", "1"]
    command += ["--batch-size", "16", "--peak-size", "512"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert "train      fp32" in result.stdout  # resnet20 was measured (fastnet's options are fastnet's alone)
    assert "Traceback" not in result.stderr and result.stderr.strip().startswith("throughput.py: error: CIFAR-10")
