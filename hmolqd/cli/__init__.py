"""The command line, `python -m hmolqd COMMAND` and the `hmolqd` script: the same functions the notebooks call.

    args.py       checks of each flag's value, and argparse's errors printed as one line (exit status 2)
    parser.py     the subcommands and their flags (argparse only: the words of the interface)
    commands.py   the handlers: check the values, call the library, map its errors onto the flags; `main`

May import: every other part of hmolqd (the command line is the top layer, beside notebook.py); nothing below
imports it.
"""

from __future__ import annotations

from hmolqd.cli.commands import COMMANDS, EVALUATE_FLAGS, INTERRUPTED, build_parser, main

__all__ = ["COMMANDS", "EVALUATE_FLAGS", "INTERRUPTED", "build_parser", "main"]
