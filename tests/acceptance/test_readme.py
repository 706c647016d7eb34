"""The README's walkthrough, run command by command, its printed output checked for shape."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
ACTIVATE = ". .venv/bin/activate"


def walkthrough() -> list[tuple[str, list[str]]]:
    """The (command, expected output lines) pairs between the walkthrough markers."""
    block = README.split("<!-- walkthrough", 1)[1].split("<!-- /walkthrough -->", 1)[0]
    body = block.split("```console\n", 1)[1].split("```", 1)[0]
    steps: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    return steps


def shape(line: str) -> re.Pattern[str]:
    """A README output line as a pattern: ids, times, the secret and '…' are placeholders."""
    placeholders = {
        "\x00T": r"\d{4}-\d\d-\d\dT[\d:.]+Z",  # an RFC 3339 time
        "\x00S": r"ntf_[0-9a-f]{48}",  # a secret
        "\x00I": r"[a-z2-7]{12}",  # an id
        "\x00E": r".*",  # an ellipsis: the rest of the line
    }
    text = re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+Z", "\x00T", line)
    text = text.replace("ntf_…", "\x00S").replace("…", "\x00E")
    text = re.sub(r"\b[a-z2-7]{12}\b", "\x00I", text)
    pattern = re.escape(text)
    for placeholder, regex in placeholders.items():
        pattern = pattern.replace(re.escape(placeholder), regex)
    pattern = re.sub(r"(\\ )+", r"\\s+", pattern)
    return re.compile(pattern)


def test_walkthrough_works_verbatim(env: dict[str, str]) -> None:
    """Each walkthrough command succeeds and prints lines shaped like the README's."""
    steps = walkthrough()
    assert steps[0][0] == ACTIVATE
    # Where tests run from another environment than .venv, the PATH already has notifier.
    prefix = f"{ACTIVATE} && " if (REPO / ".venv/bin/activate").exists() else ""
    outputs: list[str] = []
    for command, expected in steps[1:]:
        result = subprocess.run(
            ["bash", "-c", prefix + command],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"{command}: {result.stderr}"
        printed = (result.stdout + result.stderr).splitlines()
        for line in expected:
            assert any(shape(line).fullmatch(out) for out in printed), (
                f"{command}: no output line shaped like {line!r}; got {printed}"
            )
        outputs.append(result.stderr)
    first_check, second_check = outputs[1], outputs[3]
    assert "Warn: API Token ci-deploy" in first_check
    assert "Warn:" not in second_check
