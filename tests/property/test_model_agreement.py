"""Each backend against the model under random operation sequences (stalwart.testing.properties)."""

from pathlib import Path

from stalwart.testing.properties import run_agreement


def test_backend_agrees_with_model(backend_kind: str, tmp_path: Path) -> None:
    run_agreement(backend_kind, tmp_path)
