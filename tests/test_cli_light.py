"""A mistyped command line is refused before any heavy library loads: argument errors appear in a
fraction of a second, not after the 2-7 s that importing torch, diffusers or pandas takes."""

from __future__ import annotations

import json
import subprocess
import sys

from hero_bench.cli import COMMANDS

HEAVY = ("torch", "diffusers", "transformers", "peft", "pandas", "matplotlib", "scipy", "open_clip", "mediapipe")

# in a fresh interpreter: parse a bad flag of every command, then list the heavy modules loaded
PROBE = f"""
import json, sys
from hero_bench.cli import main
refused = {{}}
for name in {list(COMMANDS)!r}:
    try:
        main([name, "--no-such-flag"])
    except SystemExit as exit:
        refused[name] = exit.code
print(json.dumps({{"refused": refused, "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
"""


def test_argument_errors_of_every_command_come_before_any_heavy_import():
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["refused"] == {name: 2 for name in COMMANDS}  # argparse's usage error, each command
    assert "--no-such-flag" in proc.stderr or "required" in proc.stderr
    assert result["heavy"] == [], f"loaded while parsing arguments: {result['heavy']}"
