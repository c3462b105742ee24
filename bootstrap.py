#!/usr/bin/env python3
"""Run or test Teeka from a fresh checkout with nothing but Python 3.11+.

    python3 bootstrap.py run [options of `python -m gateway run`]
    python3 bootstrap.py test [pytest arguments]

Creates ./.venv on first use, installs the pinned requirements into it again only when the
requirements files change, then hands over to the gateway or to pytest.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
COMMANDS = {
    "run": ("requirements.txt", ["-m", "gateway", "run"]),
    "test": ("requirements-test.txt", ["-m", "pytest"]),
}


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_venv() -> None:
    if venv_python().exists():
        return
    print(f"Creating {VENV.name}/ ...", flush=True)
    try:
        venv.EnvBuilder(with_pip=True).create(VENV)
    except (OSError, subprocess.CalledProcessError) as exc:  # e.g. no ensurepip (python3-venv)
        sys.exit(f"could not create {VENV}: {exc}\n"
                 "Install Python's venv module (on Debian/Ubuntu: apt install python3-venv) and retry.")


def requirement_files(name: str) -> list[Path]:
    """The file and every file it pulls in with `-r`."""
    files, todo = [], [ROOT / name]
    while todo:
        path = todo.pop()
        files.append(path)
        for line in path.read_text().splitlines():
            parts = line.split("#")[0].split()
            if len(parts) == 2 and parts[0] in ("-r", "--requirement"):
                todo.append(path.parent / parts[1])
    return files


def ensure_requirements(name: str) -> None:
    digest = hashlib.sha256()
    for path in requirement_files(name):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    stamp = VENV / f".installed-{name}.sha256"
    if stamp.exists() and stamp.read_text().strip() == digest.hexdigest():
        return
    print(f"Installing {name} into {VENV.name}/ ...", flush=True)
    result = subprocess.run([str(venv_python()), "-m", "pip", "install", "--disable-pip-version-check",
                             "-q", "-r", str(ROOT / name)])
    if result.returncode != 0:
        sys.exit(f"installing {name} failed (exit status {result.returncode})")
    stamp.write_text(digest.hexdigest() + "\n")


def main(argv: list[str]) -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"Teeka needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not argv or argv[0] not in COMMANDS:
        sys.exit(__doc__.strip())
    requirements, command = COMMANDS[argv[0]]
    ensure_venv()
    ensure_requirements(requirements)
    python = str(venv_python())
    # From the repository root, so `gateway` imports and ./var is the installation's data dir.
    os.chdir(ROOT)
    os.execv(python, [python, *command, *argv[1:]])


if __name__ == "__main__":
    main(sys.argv[1:])
