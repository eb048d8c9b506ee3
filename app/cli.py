"""`irsam`: the headless command line. One module per subcommand in `app.commands`.

Only the module of the command being run is imported, so `irsam info` does not pay for torch.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# subcommand -> (module in app.commands exposing add_parser(subparsers) and run(args) -> int, summary)
COMMANDS = {
    "info": ("app.commands.info", "describe a frame source and list unreadable frames"),
    "make-demo": ("app.commands.demo", "write a synthetic 16-bit IR sequence with ground-truth masks"),
    "detect": ("app.commands.detect", "run IRSAM or a classical detector over frames into a review project"),
    "eval": ("app.commands.eval", "score a detector with the field's metrics (IoU, nIoU, Pd, Fa, ROC)"),
    "train": ("app.commands.train", "train or fine-tune IRSAM"),
    "export": ("app.commands.export", "export reviewed frames as a training data set"),
    "import-labels": ("app.commands.import_labels", "commit a data set's masks into a review project to correct them"),
    "stats": ("app.commands.stats", "parameter and MAC counts of the model configs"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser for `command`; the other subcommands appear with their summary only."""
    parser = argparse.ArgumentParser(prog="irsam", description="IRSAM infrared small target detection, headless.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, summary) in COMMANDS.items():
        if name == command:
            importlib.import_module(module_name).add_parser(sub)
        else:
            sub.add_parser(name, help=summary, add_help=False)
    parser.set_defaults(subcommand_parsers=sub.choices)
    return parser


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("irsam-review")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        parser = build_parser(command if command in COMMANDS else None)  # imports the command's module (torch)
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # said by the subcommand, with its own usage line, not the top level's
            args.subcommand_parsers[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `irsam info ... | head`: the reader has gone, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the exit flush of stdout must not fail again
        return 0


if __name__ == "__main__":
    sys.exit(main())
