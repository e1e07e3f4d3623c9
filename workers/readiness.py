"""Telling a supervisor that a process serves: the `--ready-file` every long-running command
takes, written atomically once it is ready, so `tasksync up` and the tests wait on a file."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

# What every ready file of this process also says (the operations endpoint's URL, when it
# serves one); filled in before the process is ready.
EXTRA_READY_INFO: dict[str, Any] = {}


def ready_file_option(command: F) -> F:
    return click.option(
        "--ready-file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Write a JSON object here (pid, and what to reach) once ready to serve.",
    )(command)


def write_ready_file(path: Path | None, info: Mapping[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    document = {"pid": os.getpid(), **EXTRA_READY_INFO, **info}
    temporary.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(temporary, path)
