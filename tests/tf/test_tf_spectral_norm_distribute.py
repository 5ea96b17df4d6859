"""SpectralNormalization under tf.distribute.MirroredStrategy over two logical CPU devices, in a
subprocess (sn_mirrored_worker.py): the logical devices have to be configured before TensorFlow
initialises its devices. Training there must match training on one device, and every replica's
copy of the kernel and vector_u must stay identical."""
import json
import os
import subprocess
import sys

import pytest

WORKER = os.path.join(os.path.dirname(__file__), "sn_mirrored_worker.py")


def run_worker(mode):
    proc = subprocess.run([sys.executable, WORKER, mode], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ))
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    assert proc.returncode == 0 and lines, (
        f"worker failed (exit {proc.returncode})\nstdout:\n{proc.stdout[-3000:]}\n"
        f"stderr:\n{proc.stderr[-6000:]}")
    return json.loads(lines[-1])


@pytest.mark.parametrize("mode", ["keras", "through_sigma"])
def test_mirrored_strategy_on_two_logical_cpus(mode):
    result = run_worker(mode)
    assert result["replicas"] == 2, f"expected 2 replicas, got {result}"
    assert len(result["devices"]) == 2, f"expected 2 logical CPUs, got {result['devices']}"
    assert result["distributed_variables"], "the variables were not mirrored"
    assert result["vector_u_aggregation"] == ["none", "none"]  # Keras' own setting
    assert result["vector_u_moved"] > 0, "vector_u was never updated in training"
    assert result["replica_mismatch"] == 0.0, (
        f"replica copies diverged by {result['replica_mismatch']}")
    assert result["max_weight_diff"] < 1e-5, (
        f"distributed training differs from one device by {result['max_weight_diff']}: {result}")
    assert result["max_prediction_diff"] < 1e-5, result
    for a, b in zip(result["single_loss"], result["dist_loss"]):
        assert abs(a - b) <= 1e-5 * max(1.0, abs(a)), result
