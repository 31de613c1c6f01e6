"""Collect bench/results/*.md into BENCHMARKS.md, with the machine they ran on."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path

from machine import cpu_model  # bench/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
ORDER = ["import", "harvest", "curate", "input", "serve", "openset", "recipe"]




def memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def main() -> None:
    found = {path.stem: path for path in RESULTS.glob("*.md")}
    names = [name for name in ORDER if name in found] + sorted(set(found) - set(ORDER))
    parts = [
        "# sporeprint benchmarks",
        "",
        f"Collected {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `make bench` (bench/report.py). Each section is the "
        "latest output of its benchmark (bench/results/*.md), measured side by side with its baseline in one run.",
        "",
        f"Machine: {os.cpu_count()} cores, {cpu_model()}, {memory_gib():.0f} GiB RAM, no GPU, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}.",
        "",
    ]
    missing = [name for name in ORDER if name not in found]
    if missing:
        parts += [f"Not yet measured: {', '.join(missing)} (run `make bench-<name>`).", ""]
    for name in names:
        text = found[name].read_text().strip()
        parts += [text.replace("\n# ", "\n## ").replace("# ", "## ", 1) if text.startswith("# ") else text, ""]
    (ROOT / "BENCHMARKS.md").write_text("\n".join(parts))
    print(f"wrote {ROOT / 'BENCHMARKS.md'} from {len(names)} result files")


if __name__ == "__main__":
    main()
