"""Benchmarks: commands that print tables (run with ``python -m bib_ray.bench.<name>``)."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable

from bib_ray.errors import UserError


def module_main(module: str, description: str, add_arguments: Callable[[argparse.ArgumentParser], None],
                run: Callable[[argparse.Namespace, str], int], argv: list[str] | None = None) -> int:
    """``python -m MODULE ARGS``: parse ``argv`` with ``add_arguments`` and call ``run(args, command)``,
    ``command`` being the line that reproduces the call."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    add_arguments(parser)
    return run(parser.parse_args(argv), shlex.join(["python", "-m", module, *argv]))


def exit_with(main: Callable[[], int], name: str) -> None:
    """Exit with ``main()``'s status; a ``UserError`` is one line on stderr and status 2."""
    try:
        sys.exit(main())
    except UserError as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        sys.exit(2)
