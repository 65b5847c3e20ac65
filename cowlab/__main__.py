"""``python -m cowlab`` and the ``cowlab`` command.

Ctrl-C at any moment, even while the modules are still loading, ends in one
line on stderr and exit status 130, never a traceback (``cowlab.cli`` turns a
Ctrl-C inside a command into "interrupted: the result is inconclusive")."""
import sys


def main():
    try:
        from .cli import main as cli
        cli(prog_name="cowlab")
    except KeyboardInterrupt:
        sys.stderr.write("cowlab: interrupted\n")
        sys.exit(130)


if __name__ == "__main__":
    main()
