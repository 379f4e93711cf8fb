"""`python -m export ...` is `seqguard export ...`."""

import sys

from seqguard.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
