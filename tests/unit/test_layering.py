# Run: .venv/bin/python -m pytest tests/unit/test_layering.py
"""The library layer imports no Ray, and every environment variable is declared in automem/env_vars.py."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_importing_every_automem_module_imports_no_ray():
    code = (
        "import importlib, pkgutil, sys, automem\n"
        "names = [m.name for m in pkgutil.walk_packages(automem.__path__, 'automem.')]\n"
        "for n in names: importlib.import_module(n)\n"
        "bad = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))\n"
        "print(len(names)); assert not bad, bad\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    assert int(res.stdout.strip()) >= 20


def test_environment_variables_are_read_only_through_env_vars():
    pattern = re.compile(r"os\.environ(?!\s*\.copy)|os\.getenv")
    offenders = []
    for folder in ("automem", "actors", "pipelines"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "env_vars.py":
                continue
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line) and "env_vars" not in line and "env-ok" not in line:
                    offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, "read env vars through automem/env_vars.py:\n" + "\n".join(offenders)
