"""CPU per robot call in-process, through the WSGI application gunicorn loads (``config.wsgi.application``: the
robot calls' own entry, Django's request cycle for the plain view; no HTTP),
in rounds of 200 alternating with the plain view, so both see the same machine:

    .venv/bin/python bench/wsgi_profile.py 4000                # min and median of the rounds, ms of CPU
    .venv/bin/python bench/wsgi_profile.py 2000 prof tottime    # a cProfile of the robot calls instead
"""
from __future__ import annotations

import cProfile
import io
import os
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import reset_state, setup_django  # noqa: E402

ROUND = 200


def main() -> int:
    setup_django()
    reset_state()
    from bench.handler import ROBOT, TOKEN_MARK, make_portal, robot_body  # noqa: PLC0415
    from config.wsgi import application as app  # noqa: PLC0415  (after setup_django)

    portal, token = make_portal()
    body = robot_body(portal, token)
    path = f"/bizproc/robots/{ROBOT}/"

    def call(url: str, method: str = "POST", data: bytes = b"") -> str:
        status = []
        environ = {"REQUEST_METHOD": method, "PATH_INFO": url, "SCRIPT_NAME": "", "QUERY_STRING": "",
                   "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "HTTP_HOST": "127.0.0.1",
                   "CONTENT_TYPE": "application/x-www-form-urlencoded", "CONTENT_LENGTH": str(len(data)),
                   "wsgi.input": io.BytesIO(data), "wsgi.url_scheme": "http", "SERVER_PROTOCOL": "HTTP/1.1",
                   "HTTP_USER_AGENT": "Bitrix24 Webhook Engine", "wsgi.errors": sys.stderr}
        out = app(environ, lambda s, h: status.append(s))
        b"".join(out)
        if hasattr(out, "close"):  # the robot calls' entry answers with a plain list
            out.close()
        return status[0]

    for i in range(100):  # warm up: imports, the connection, the portal cache
        assert call(path, data=body.replace(TOKEN_MARK, f"w{i}").encode()).startswith("200")
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    bodies = [body.replace(TOKEN_MARK, f"p{i}").encode() for i in range(n)]
    if len(sys.argv) > 2 and sys.argv[2] == "prof":
        prof = cProfile.Profile(time.process_time)  # CPU, not the commit's wait
        prof.enable()
        for b in bodies:
            call(path, data=b)
        prof.disable()
        pstats.Stats(prof).sort_stats(sys.argv[3] if len(sys.argv) > 3 else "cumulative").print_stats(45)
        return 0
    rounds: dict[str, list[float]] = {"plain view GET": [], "robot call POST": []}
    for r in range(n // ROUND):
        for label in rounds:
            c0 = time.process_time()
            for i in range(r * ROUND, (r + 1) * ROUND):
                if label == "plain view GET":
                    call("/bench/noop/", "GET")
                else:
                    call(path, data=bodies[i])
            rounds[label].append((time.process_time() - c0) / ROUND * 1000)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; command: {' '.join(sys.argv)}")
    for label, values in rounds.items():
        values.sort()
        print(f"{label:<16}: CPU per call min {values[0]:.3f} ms, median {values[len(values) // 2]:.3f} ms")
    reset_state()
    return 0


if __name__ == "__main__":
    sys.exit(main())
