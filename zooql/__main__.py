"""``python -m zooql``: the zooql command line."""
import sys

from zooql.repl.cli import main

if __name__ == "__main__":
    sys.exit(main())
