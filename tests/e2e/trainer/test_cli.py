"""``sporeprint train`` and ``sporeprint models`` against the real trainer API and a real training worker:
submit a spec file and follow it to the end, list and show the model, promote it; bad spec files and unknown
ids end in one line."""

from __future__ import annotations

import json
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
