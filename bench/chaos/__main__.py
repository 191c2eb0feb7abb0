"""``python -m bench.chaos``: see the package's docstring."""

from bench.chaos.run import main

if __name__ == "__main__":
    main()
