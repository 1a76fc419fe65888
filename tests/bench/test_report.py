"""The benchmark's report: rows chosen by --systems, the table's cells, the targets' verdicts."""

from __future__ import annotations

from typing import Any

import pytest
from bench.adapters import ROWS, select, slug
from bench.driver import Settings, pct
from bench.report import markdown, recovery_cell, targets


def row(name: str, system: str, after_crash: str = "back when the lease expires",
        **figures: Any) -> dict[str, Any]:
    base = {"enqueue_single_per_s": 1000.0, "enqueue_batched_per_s": None,
            "drain_1_per_s": 500.0, "drain_2_per_s": 900.0, "latency_p50_ms": 1.0,
            "latency_p95_ms": 2.0, "latency_p99_ms": 3.0, "recovery_s": None,
            "recovery_not_rerun": 0, "peak_rss_mb_1": 50.0, "peak_rss_mb_2": 80.0}
    return {"row": name, "slug": name.lower(), "system": system, "version": "1.0",
            "settings": "defaults", "workers": {"1": "w -c 1", "2": "w -c 2"},
            "batch_api": None, "after_crash": after_crash, "lease_seconds": None,
            "figures": {**base, **figures},
            "runs": {"recovery": [{"window_s": 15.0, "not_rerun": figures.get(
                "recovery_not_rerun", 0)}]}, "errors": []}


def doc(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"date": "2026-01-02T03:04:05+00:00", "quick": False, "wall_s": 600.0,
            "machine": {"cpu": "cpu", "cores": 2, "memory_gb": 4.0, "os": "Linux",
                        "python": "3.11", "redis_server": "7.0", "load_before": [1.0, 1.0, 1.0],
                        "load_after": [1.0, 1.0, 1.0]},
            "redis_server": {"version": "7.0", "options": ["--save", "", "--appendonly", "no"]},
            "settings": Settings(False, None).describe(), "rows": rows}


def test_systems_option_selects_every_row_of_a_system_or_one_row() -> None:
    assert select(None) == list(ROWS)
    assert [slug(r) for r in select("celery")] == ["celery", "celery-acks-late"]
    assert [slug(r) for r in select("stalwart-sqlite,rq")] == ["stalwart-sqlite", "rq"]
    with pytest.raises(SystemExit, match="unknown system 'kafka'"):
        select("kafka")


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (pct(values, 50), pct(values, 99), pct(values, 100)) == (50.0, 99.0, 100.0)
    assert pct([7.0], 99) == 7.0


def test_recovery_cell_tells_lost_from_late() -> None:
    lost = row("huey", "huey", "lost: popped before running", recovery_not_rerun=2)
    late = row("Dramatiq", "dramatiq", "back after heartbeat_timeout, 60 s",
               recovery_not_rerun=16)
    ok = row("stalwart (Redis)", "stalwart", recovery_s=7.5)
    assert recovery_cell(lost["figures"], lost) == "lost 2 (popped before running)"
    assert recovery_cell(late["figures"], late) == (
        "16 not back within 15 s (back after heartbeat_timeout, 60 s)")
    assert recovery_cell(ok["figures"], ok) == "7.5 s, none lost"


def test_targets_compare_stalwart_with_the_right_peer() -> None:
    st = row("stalwart (Redis)", "stalwart", drain_2_per_s=3000.0, enqueue_batched_per_s=20000.0,
             latency_p99_ms=2.0, recovery_s=8.0)
    st["lease_seconds"] = 5.0
    rows = [st,
            row("Celery acks_late", "celery", drain_2_per_s=800.0, latency_p99_ms=6.0),
            row("huey", "huey", drain_2_per_s=4000.0, enqueue_single_per_s=9000.0,
                latency_p99_ms=1.5),
            row("RQ", "rq", drain_2_per_s=60.0, enqueue_batched_per_s=12000.0)]
    text = "\n".join(targets(rows, Settings(False, None).describe()))
    assert "| 3,000 | Celery acks_late: 800 | 3.75x | yes |" in text
    assert "| 3,000 | huey: 4,000 | 0.75x | NO |" in text
    # The fastest peer's best enqueue figure, batched or not: RQ's batched 12,000.
    assert "| 20,000 | RQ: 12,000 | 1.67x | yes |" in text
    assert "| 2.0 | huey: 1.5 | 0.75x | NO |" in text
    # 8 s is within the 5 s lease plus the 5 s the 20 tasks of 0.5 s take on 2 processes.
    assert "8.0 s, none lost | lease 5 s + 5 s = 10 s | 0.80 of it | yes" in text


def test_markdown_lists_every_row_with_its_settings_and_errors() -> None:
    broken = row("SAQ", "saq")
    broken["errors"] = ["drain 2: no task ran within 60 s:\nworker log"]
    text = markdown(doc([row("stalwart (Redis)", "stalwart"), broken]))
    assert text.startswith("# Benchmark: stalwart and peer task queues\n")
    assert "Run 2026-01-02T03:04:05+00:00" in text
    assert "| SAQ | 1.0 | 1,000 | - | 500 | 900 | 1.0 / 2.0 / 3.0 |" in text
    assert "* SAQ: drain 2: no task ran within 60 s:" in text and "worker log" not in text
    assert "`w -c 1` / `w -c 2`" in text
