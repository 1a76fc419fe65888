"""The benchmark's own venvs, kept apart from the project's runtime dependencies.

Two, because the peers disagree on redis-py: ``bench/.venv`` (stalwart, Celery, Dramatiq,
huey, RQ, taskiq, matplotlib, py-spy) and ``bench/.venv-redis5`` (arq, SAQ). Each is
(re)installed when its requirements change, as recorded in a stamp file inside it.
Standard library only: this runs before either venv exists.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


class VenvError(RuntimeError):
    """A venv could not be created or installed (most often: no network to PyPI)."""


@dataclass(frozen=True)
class Venv:
    name: str
    path: Path
    requirements: Path
    with_project: bool

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def fingerprint(self) -> str:
        h = hashlib.sha256(self.requirements.read_bytes())
        if self.with_project:
            h.update((ROOT / "pyproject.toml").read_bytes())
        h.update(sys.version.encode())
        return h.hexdigest()

    @property
    def stamp(self) -> Path:
        return self.path / ".bench-stamp"

    def ready(self) -> bool:
        try:
            return self.python.exists() and self.stamp.read_text() == self.fingerprint()
        except OSError:
            return False

    def ensure(self, log: bool = True) -> Path:
        """Create and install this venv if it is missing or out of date; its python."""
        if self.ready():
            return self.python
        if log:
            print(f"bench: installing {self.path} from "
                  f"{self.requirements.name} (once; a minute or two)", flush=True)
        if not self.python.exists():
            venv.EnvBuilder(with_pip=True, clear=True).create(self.path)
        cmd = [str(self.python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
               "-r", str(self.requirements)]
        if self.with_project:
            cmd += ["-e", f"{ROOT}[redis,postgres]"]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
            raise VenvError(
                f"pip could not install {self.requirements.name} into {self.path} "
                f"(exit {proc.returncode}); is PyPI reachable?\n{tail}"
            )
        self.stamp.write_text(self.fingerprint())
        return self.python


VENVS = {
    "main": Venv("main", BENCH / ".venv", BENCH / "requirements.txt", True),
    "redis5": Venv("redis5", BENCH / ".venv-redis5", BENCH / "requirements-redis5.txt", False),
}
