"""The Flex Template's entry file (`FLEX_TEMPLATE_PYTHON_PY_FILE`): the launcher passes
template parameters as `--name=value`, so the pipeline is chosen by `--pipeline`
(`backfill`, the default, or `reprocess`) instead of a subcommand."""

from __future__ import annotations

import sys

from sluice_beam.__main__ import main


def _split(argv: list[str]) -> tuple[str, list[str]]:
    pipeline, rest = "backfill", []
    for argument in argv:
        if argument.startswith("--pipeline="):
            pipeline = argument.removeprefix("--pipeline=")
        else:
            rest.append(argument)
    return pipeline, rest


if __name__ == "__main__":
    command, options = _split(sys.argv[1:])
    sys.exit(main([command, *options]))
