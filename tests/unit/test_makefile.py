"""The Makefile: every target is phony, described with ``##``, and listed by ``make help``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKEFILE = ROOT / "Makefile"

# ``name: prerequisites ## description``; not ``NAME := value`` nor special targets (``.PHONY``).
RULE = re.compile(r"^(?P<name>[^\s:#=.][^\s:#=]*)\s*:(?!=)(?P<rest>.*)$")


def rules() -> dict[str, str | None]:
    """Every target of the Makefile, with its ``##`` description (None when it has none).

    File targets (a path such as ``$(VENV)/.installed``) are not commands and are left out.
    """
    found: dict[str, str | None] = {}
    for line in MAKEFILE.read_text().splitlines():
        match = RULE.match(line)
        if match is None or "/" in match["name"] or "$" in match["name"]:
            continue
        _, hashes, description = match["rest"].partition("## ")
        found[match["name"]] = description.strip() if hashes else None
    return found


def phony() -> set[str]:
    names: set[str] = set()
    for line in MAKEFILE.read_text().splitlines():
        if line.startswith(".PHONY:"):
            names.update(line.removeprefix(".PHONY:").split())
    return names


def test_the_parser_sees_the_targets() -> None:
    targets = rules()
    assert {"help", "run", "test", "unit", "lint", "stack", "clean"} <= targets.keys()
    assert "$(VENV)/.installed" not in targets


def test_every_target_is_phony_and_every_phony_is_a_target() -> None:
    targets = set(rules())
    assert targets - phony() == set(), "targets missing from .PHONY"
    assert phony() - targets == set(), ".PHONY names that are not targets"


def test_every_target_has_a_description() -> None:
    assert [name for name, description in rules().items() if not description] == []


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_help_lists_every_target_with_its_description() -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MAKELEVEL", "MFLAGS"}}
    result = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    listed = {}
    for line in result.stdout.splitlines():
        name, _, description = line.strip().partition(" ")
        listed[name] = description.strip()
    assert listed == rules()
