"""The README is a front page that fits, every command it shows exists, every link resolves,
and every `mlops` command is in the CLI reference."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CLI_REFERENCE = ROOT / "docs" / "cli.md"
FRONT_PAGE_LINES = 200


def cli_root():
    from mlops.cli import app

    return typer.main.get_command(app)


def is_group(command) -> bool:
    # Typer vendors its own Click: a group is whatever has subcommands
    return hasattr(command, "commands")


def leaf_commands(group, prefix: tuple[str, ...] = ()) -> dict:
    found: dict = {}
    for name, command in group.commands.items():
        if getattr(command, "hidden", False):
            continue
        path = (*prefix, name)
        if is_group(command):
            found.update(leaf_commands(command, path))
        else:
            found[path] = command
    return found


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, flags=re.S)


def shown_commands(text: str, program: str) -> list[list[str]]:
    """Command lines in the fenced blocks that start with `program` (after an optional path)."""
    found = []
    for block in code_blocks(text):
        for line in block.splitlines():
            line = line.split("  #")[0].strip().rstrip("\\").strip()
            try:
                words = shlex.split(line, comments=True) if line else []
            except ValueError:  # an unfinished quote in a multi-line example: its first word counts
                words = line.split()
            if words and (words[0] == program or words[0].endswith("/" + program)):
                found.append(words[1:])
    return found


def resolve(root, words: list[str]) -> tuple:
    command = root
    rest = list(words)
    while is_group(command) and rest and rest[0] in command.commands:
        command = command.commands[rest.pop(0)]
    return command, rest


def option_names(command) -> set[str]:
    names = {"--help", "-h"}
    for param in command.params:
        names.update(getattr(param, "opts", ()))
        names.update(getattr(param, "secondary_opts", ()))
    return names


def problems_in_commands(text: str, root) -> list[str]:
    problems = []
    for words in shown_commands(text, "mlops"):
        command, rest = resolve(root, words)
        shown = "mlops " + " ".join(words)
        if is_group(command):
            problems.append(f"{shown}: no such command")
            continue
        flags = [w.split("=")[0] for w in rest if w.startswith("-")]
        unknown = [flag for flag in flags if flag not in option_names(command)]
        if unknown:
            problems.append(f"{shown}: no option {', '.join(unknown)}")
    return problems


def make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M))


def test_front_page_fits_on_a_few_screens():
    assert len(README.read_text().splitlines()) <= FRONT_PAGE_LINES


def test_every_mlops_command_the_readme_shows_exists_with_its_options():
    shown = shown_commands(README.read_text(), "mlops")
    assert len(shown) >= 8, "the README shows the everyday commands"
    assert problems_in_commands(README.read_text(), cli_root()) == []


def test_a_command_that_does_not_exist_is_found():
    text = ("```bash\nmlops deploy-everything fraud\nmlops train fraud --no-such-flag\n"
            "mlops train fraud\n```\n")
    assert problems_in_commands(text, cli_root()) == [
        "mlops deploy-everything fraud: no such command",
        "mlops train fraud --no-such-flag: no option --no-such-flag",
    ]


def test_every_make_target_the_readme_names_exists():
    named = set(re.findall(r"`make ([a-z-]+)`", README.read_text()))
    named |= {words[0] for words in shown_commands(README.read_text(), "make") if words}
    assert named, "the README names make targets"
    assert named - make_targets() == set()


def test_every_link_and_picture_resolves():
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text())
    local = [t for t in targets if not t.startswith(("http://", "https://"))]
    assert "docs/pipeline.svg" in local
    assert [t for t in local if not (ROOT / t).exists()] == []
    for page in sorted((ROOT / "docs").glob("*.md")):
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if not target.startswith(("http://", "https://")):
                assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_every_mlops_command_is_in_the_cli_reference():
    reference = CLI_REFERENCE.read_text()
    missing = ["mlops " + " ".join(path) for path in leaf_commands(cli_root())
               if f"mlops {' '.join(path)}" not in reference]
    assert missing == []


@pytest.mark.parametrize("doc", sorted(p.name for p in (ROOT / "docs").glob("*.md")))
def test_commands_in_the_docs_exist(doc):
    assert problems_in_commands((ROOT / "docs" / doc).read_text(), cli_root()) == []
