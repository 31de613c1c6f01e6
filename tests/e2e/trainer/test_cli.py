"""``sporeprint train`` and ``sporeprint models`` against the real trainer API and a real training worker:
submit a spec file and follow it to the end, list and show the model, promote it; bad spec files and unknown
ids end in one line."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from sporeprint.cli import main
from sporeprint.processes import ManagedProcess

from .conftest import TOKEN

pytestmark = [pytest.mark.e2e, pytest.mark.ml]


def cli(trainer_api: ManagedProcess, tmp_path: Path, *args: str) -> tuple[int, str]:
    group, command, *rest = args
    result = CliRunner().invoke(main, ["--stack-dir", str(tmp_path / "no-stack"), group, command, "--url",
                                       trainer_api.url, "--token", TOKEN, *rest])
    return result.exit_code, result.output


def test_submit_follow_list_show_promote(trainer_api: ManagedProcess, shared_worker: ManagedProcess,
                                         spec_for: Callable[..., dict[str, Any]], tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec_for(epochs=2, name="cli")))
    code, output = cli(trainer_api, tmp_path, "train", "submit", str(spec_file), "--follow", "--interval", "0.2")
    assert code == 0, output + shared_worker.log_tail()
    job_line = next(line for line in output.splitlines() if line.startswith("job "))
    job_id = job_line.split()[1].rstrip(":")
    assert f"job {job_id} completed after 2 epochs: " in output and "top1 " in output

    code, output = cli(trainer_api, tmp_path, "train", "status", job_id)
    status = json.loads(output)
    assert code == 0 and status["state"] == "completed" and len(status["history"]) == 2

    code, output = cli(trainer_api, tmp_path, "models", "list", "--json")
    listed = {model["model_id"]: model for model in json.loads(output)}
    assert code == 0 and listed[job_id]["status"] == "complete"

    code, output = cli(trainer_api, tmp_path, "models", "show", job_id)
    detail = json.loads(output)
    assert code == 0 and detail["card"]["model_id"] == job_id and len(detail["history"]) == 2
    assert detail["card"]["spec"]["name"] == "cli"  # lineage: the spec it was trained from

    code, output = cli(trainer_api, tmp_path, "models", "promote", job_id)
    assert code == 0 and output.strip() == f"promoted {job_id}"
    code, output = cli(trainer_api, tmp_path, "models", "list")
    assert code == 0 and any(line.startswith(f"* {job_id}") for line in output.splitlines())

    target = tmp_path / "downloaded"
    code, output = cli(trainer_api, tmp_path, "models", "download", job_id, "labels.json", "curves.png",
                       "--to", str(target))
    assert code == 0, output
    assert json.loads((target / "labels.json").read_text())["classes"] == detail["card"]["classes"]
    assert (target / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, output = cli(trainer_api, tmp_path, "models", "download", job_id, "nope.bin", "--to", str(target))
    assert code == 1 and "has no artifact nope.bin" in output and "labels.json" in output, output

    code, output = cli(trainer_api, tmp_path, "train", "resume", job_id)  # a completed job has nothing to resume
    assert code == 1 and len(output.strip().splitlines()) == 1 and "409" in output, output


def test_presets_become_spec_files(trainer_api: ManagedProcess, tmp_path: Path) -> None:
    from shared.training import TrainingJobSpec

    code, output = cli(trainer_api, tmp_path, "train", "presets")
    assert code == 0 and {line.split()[0] for line in output.splitlines()} >= {"demo", "gpu"}
    spec_file = tmp_path / "gpu.yaml"
    code, output = cli(trainer_api, tmp_path, "train", "presets", "gpu", "--dataset", "fungi", "-o", str(spec_file))
    assert code == 0 and f"sporeprint train submit {spec_file}" in output, output
    spec = TrainingJobSpec.model_validate(yaml.safe_load(spec_file.read_text()))
    assert spec.data.dataset == "fungi"
    code, output = cli(trainer_api, tmp_path, "train", "presets", "gpu")
    assert code == 2 and "--dataset" in output
    code, output = cli(trainer_api, tmp_path, "train", "presets", "nope", "--dataset", "fungi")
    assert code == 1 and "404" in output and len(output.strip().splitlines()) == 1, output


def test_sweep_follow_lists_and_marks_the_best(trainer_api: ManagedProcess, shared_worker: ManagedProcess,
                                               spec_for: Callable[..., dict[str, Any]], tmp_path: Path) -> None:
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump({"name": "cli-sweep", "base": spec_for(epochs=1),
                                          "grid": {"optimizer.learning_rate": [1e-3, 3e-3]}}))
    code, output = cli(trainer_api, tmp_path, "train", "sweep", str(sweep_file), "--follow", "--interval", "0.5")
    assert code == 0, output + shared_worker.log_tail()
    sweep_id = output.split()[1].rstrip(":")
    table = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", output)  # the progress bar's cursor moves, if any
    best = re.findall(r"^best: (\S+)", table, re.M)[0]
    starred = re.findall(r"^\* (\S+)", table, re.M)
    assert starred == [best] and best.startswith(sweep_id), output

    code, output = cli(trainer_api, tmp_path, "train", "sweeps")
    line = next((line for line in output.splitlines() if line.startswith(sweep_id)), output)
    assert code == 0 and "2 jobs: 2 completed" in line and f"best {best}" in line and "cli-sweep" in line, output
    code, output = cli(trainer_api, tmp_path, "train", "sweep-status", sweep_id)
    assert code == 0 and sum(line[2:].startswith(sweep_id) for line in output.splitlines()) == 2, output
    code, output = cli(trainer_api, tmp_path, "train", "sweep-status", "s-nope")
    assert code == 1 and "404" in output


def test_bad_specs_and_unknown_ids_are_one_line(trainer_api: ManagedProcess, spec_for: Callable[..., dict[str, Any]],
                                                tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: [unclosed\n")
    code, output = cli(trainer_api, tmp_path, "train", "submit", str(broken))
    assert code == 1 and output.startswith(f"Error: {broken}: cannot read it as YAML"), output

    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({**spec_for(), "epochs": float("nan")}))  # json.dumps writes NaN
    code, output = cli(trainer_api, tmp_path, "train", "submit", str(wrong))
    assert code == 1 and output.strip() == f"Error: {wrong}: epochs is not a finite number (NaN or infinity)"
    wrong.write_text(json.dumps({**spec_for(), "epochs": 0}))
    code, output = cli(trainer_api, tmp_path, "train", "submit", str(wrong))
    assert code == 1 and len(output.strip().splitlines()) == 1 and "trainer refused" in output, output

    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    code, output = cli(trainer_api, tmp_path, "train", "submit", str(listed))
    assert code == 1 and "expected a mapping" in output

    code, output = cli(trainer_api, tmp_path, "train", "status", "no-such-job")
    assert code == 1 and len(output.strip().splitlines()) == 1 and "404" in output, output
    result = CliRunner().invoke(main, ["--stack-dir", str(tmp_path / "no-stack"), "models", "promote",
                                       "no-such-model", "--url", trainer_api.url, "--token", TOKEN])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, (result.output, result.exception)
