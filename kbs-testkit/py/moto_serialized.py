#!/usr/bin/env python3
"""moto's S3 server with requests processed one at a time.

    moto_serialized.py HOST PORT

moto_server serves each request on its own thread, and its conditional writes (If-None-Match,
If-Match) check and write without a lock, so two racing compare-and-swaps can both win now and
then; AWS S3 makes the check and the write atomic. Serializing the application restores those
semantics while keeping moto's threaded HTTP handling (keep-alive connections still work).
"""
import os
import sys
import threading

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serialized(environ, start_response):
        with lock:
            return list(app(environ, start_response))

    run_simple(host, port, serialized, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
