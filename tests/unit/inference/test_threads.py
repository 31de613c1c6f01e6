"""TensorFlow's intra-op threads are set before its runtime starts (a fresh process: it can only be set once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.cpus import available_cpus

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = """
import json, sys
import tensorflow as tf
from services.inference.model import configure_threads
first = configure_threads(int(sys.argv[1]))
in_force = tf.config.threading.get_intra_op_parallelism_threads()
tf.constant(1.0) + 1.0  # the runtime starts: the setting is fixed from here on
again = configure_threads(int(sys.argv[1]) + 1)
print(json.dumps([first, in_force, again]))
"""


def run(threads: int) -> list[int]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(threads)], capture_output=True, text=True, check=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"},
                         timeout=120)
    result: list[int] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_default_is_half_the_cores_and_a_late_change_keeps_what_is_in_force() -> None:
    half = max(1, available_cpus() // 2)
    assert run(0) == [half, half, half]


def test_an_explicit_count_is_applied() -> None:
    assert run(3) == [3, 3, 3]
