"""Container HEALTHCHECK: GET /healthz on this process's own HTTP port (api or worker)."""

import os
import sys
import urllib.request

service = os.environ.get("SAMTAL_SERVICE", "").upper()
port = os.environ.get(f"SAMTAL_{service}_HTTP_PORT", "8000")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
        sys.exit(0 if answer.status == 200 else 1)
except OSError as exc:
    print(f"unhealthy: {exc}", file=sys.stderr)
    sys.exit(1)
