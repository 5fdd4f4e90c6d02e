"""Start a small HTTP service in the background, as a restart script would: detached (own
session, no inherited stdout), its pid in a file; exit 0 once it answers, 1 if it does not.

    python tests/recovery/start_service.py PORT PIDFILE
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    port, pidfile = int(sys.argv[1]), Path(sys.argv[2])
    service = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=pidfile.parent,
    )
    pidfile.write_text(str(service.pid))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return 0
        except OSError:
            time.sleep(0.02)
    return 1


if __name__ == "__main__":
    sys.exit(main())
