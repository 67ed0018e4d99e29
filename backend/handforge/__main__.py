"""``python -m handforge``: the same as the ``handforge`` command."""

from handforge.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
