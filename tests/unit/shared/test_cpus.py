"""Usable CPUs: the affinity mask, capped by a cgroup quota, as containers set them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.cpus import available_cpus, cgroup_quota

pytestmark = pytest.mark.unit


def affinity() -> int:
    return len(os.sched_getaffinity(0))


def test_cgroup_v2_quota_caps_the_count(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_quota(tmp_path) == 1.5
    assert available_cpus(tmp_path) == min(affinity(), 2)  # 1.5 CPUs: two threads can run


def test_cgroup_v2_without_a_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_quota(tmp_path) is None
    assert available_cpus(tmp_path) == affinity()


def test_cgroup_v1_quota_and_its_no_quota_marker(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    assert cgroup_quota(tmp_path) == 0.5
    assert available_cpus(tmp_path) == 1  # never below one
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_quota(tmp_path) is None


def test_unreadable_or_missing_cgroup_files_mean_no_quota(tmp_path: Path) -> None:
    assert cgroup_quota(tmp_path / "absent") is None
    (tmp_path / "cpu.max").write_text("garbage")
    assert cgroup_quota(tmp_path) is None
    assert available_cpus(tmp_path) == affinity()
