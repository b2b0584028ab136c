"""Tidelog benchmark (also `tidelog bench`): see client/bench/ and `python scripts/bench.py --help`.

python scripts/bench.py --records 500000 --size 100 --partitions 1
python scripts/bench.py --mode e2e --rate 5000 --seconds 5 --fsync interval
python scripts/bench.py --vs redis,nats          # needs `make bench-peers` once
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from client.bench.run import main

if __name__ == "__main__":
    sys.exit(main())
