"""Text for a person at a terminal: messages and progress lines broken between words (never inside
one) to fit the terminal's width; in logs and pipes each message stays one line."""
from __future__ import annotations

import os
import shutil
import sys
import textwrap


def terminal_width(file) -> int:
    try:
        return os.get_terminal_size(file.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return shutil.get_terminal_size().columns


def is_terminal(file) -> bool:
    return bool(getattr(file, "isatty", lambda: False)())


def fit_lines(fields, width, indent="    ") -> str:
    """Join ``fields`` with two spaces into lines no wider than ``width``, breaking only between
    fields (never inside a name-value pair); continuation lines are indented."""
    lines, line = [], ""
    for field in fields:
        candidate = f"{line}  {field}" if line else field
        if line and len(candidate) > width:
            lines.append(line)
            candidate = indent + field
        line = candidate
    lines.append(line)
    return "\n".join(lines)


def echo(message, file=None) -> None:
    """Print ``message``; on a terminal, broken between words to its width (continuation lines
    indented), so nothing wraps in the middle of a word."""
    file = sys.stdout if file is None else file
    if is_terminal(file):
        message = textwrap.fill(message, terminal_width(file) - 1, subsequent_indent="    ",
                                break_long_words=False, break_on_hyphens=False)
    print(message, file=file, flush=True)
