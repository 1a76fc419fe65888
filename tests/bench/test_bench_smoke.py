"""The benchmark still runs: ``bench/run.py --quick`` measures every system without error.

Slow (a few minutes: it starts each system's worker several times and waits out the peers'
recovery windows), so it is marked ``slow``; CI runs it. It installs the peers into the bench
venvs on first use; without network that is a loud skip here and a failure in CI.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stalwart.testing.services import in_ci, postgres_address, require

ROOT = Path(__file__).resolve().parents[2]
EXIT_NO_VENV = 3
FIGURES = ("enqueue_single_per_s", "drain_1_per_s", "drain_2_per_s", "latency_p50_ms",
           "latency_p99_ms", "peak_rss_mb_1", "peak_rss_mb_2")


def _skip_or_fail(reason: str) -> None:
    if in_ci():
        pytest.fail(f"{reason} (CI=true: this is a failure)", pytrace=False)
    pytest.skip(reason)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_quick_benchmark_measures_every_system(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        _skip_or_fail("BENCH SKIPPED: redis-server is not installed; the benchmark starts its own")
    _, host, port, _ = postgres_address()
    require("PostgreSQL (the stalwart (PostgreSQL) row)", host, port)

    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=1150,
    )
    if proc.returncode == EXIT_NO_VENV:
        _skip_or_fail(f"BENCH SKIPPED: the bench venvs could not be installed:\n{proc.stderr}")
    report = f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, report

    doc = json.loads((tmp_path / "results.json").read_text())
    rows = {r["slug"]: r for r in doc["rows"]}
    assert set(rows) == {"stalwart-redis", "stalwart-sqlite", "stalwart-postgres", "celery",
                         "celery-acks-late", "dramatiq", "huey", "rq", "arq", "taskiq", "saq"}
    for slug, row in rows.items():
        f = row["figures"]
        assert row["errors"] == [], (slug, row["errors"])
        assert all(f[k] and f[k] > 0 for k in FIGURES), (slug, f)
        if row["batch_api"]:
            assert f["enqueue_batched_per_s"] > 0, (slug, f)
        assert f["recovery_s"] is not None or f["recovery_not_rerun"], (slug, f)
    for slug in ("stalwart-redis", "stalwart-sqlite", "stalwart-postgres"):
        f = rows[slug]["figures"]
        # The promise the recovery phase checks: a SIGKILLed worker's tasks all run again.
        assert f["recovery_not_rerun"] == 0 and f["recovery_s"] is not None, (slug, f)
    markdown = (tmp_path / "RESULTS.md").read_text()
    assert all(r["row"] in markdown for r in doc["rows"])
    assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
