import sys

from memo_rl.cli import main

sys.exit(main())
