"""``python -m bench.soak``: see the package's docstring."""

from bench.soak.run import main

if __name__ == "__main__":
    main()
