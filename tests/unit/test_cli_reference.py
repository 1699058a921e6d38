"""docs/cli.md is what the program's own ``--help`` says, and every option says what it does."""
from __future__ import annotations

import argparse
from pathlib import Path

from eventscope.cli import commands, main, reference

ROOT = Path(__file__).resolve().parents[2]


def test_the_documented_help_is_what_the_program_prints():
    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == reference(), \
        "docs/cli.md is out of date: run `make cli-docs`"


def test_every_command_and_option_says_what_it_does():
    parsers = commands()
    listed = next(a for a in parsers["eventscope"]._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(c.dest for c in listed._choices_actions) == sorted(n.split()[1] for n in parsers if " " in n)
    assert all(c.help for c in listed._choices_actions)
    for name, command in parsers.items():
        for action in command._actions:
            if action.help == argparse.SUPPRESS or action is listed:  # collect --parent: the dashboard's
                continue
            assert action.help, f"{name} {'/'.join(action.option_strings) or action.dest} has no help"


def test_each_section_of_the_reference_is_that_command_s_help(capsys):
    text = reference()
    for name in commands():
        argv = [*name.split()[1:], "--help"]
        try:
            main(argv)
        except SystemExit as exc:
            assert exc.code == 0
        printed = capsys.readouterr().out
        assert printed.startswith(f"usage: {name} ")
        section = text.split(f"## `{name}`\n\n```text\n", 1)[1].split("\n```", 1)[0]
        # the same text whatever the terminal's width: compare word by word
        assert section.split() == printed.split()
