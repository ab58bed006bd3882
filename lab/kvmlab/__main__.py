"""python3 -m kvmlab COMMAND (lab/lab runs this with lab/ on PYTHONPATH)."""
import sys

from .cli import main

sys.exit(main(sys.argv[1:]))
