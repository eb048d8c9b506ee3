"""`irsam`: the headless command line. One module per subcommand in `app.commands`."""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand name -> module in app.commands exposing add_parser(subparsers) and run(args) -> int
COMMANDS = {
    "info": "app.commands.info",
    "make-demo": "app.commands.demo",
    "eval": "app.commands.eval",
    "export": "app.commands.export",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="irsam", description="IRSAM infrared small target detection, headless.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
