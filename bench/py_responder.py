#!/usr/bin/python3
"""The auth_http responder many operators write: http.server, one thread per
request, a fixed Auth-Status OK answer, http.server's default access log
(one stderr line per request; the harness sends it to a file). Contender in bench/run-authhttp.

    py_responder.py PORT
"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Auth-Status", "OK")
        self.send_header("Auth-Server", "127.0.0.1")
        self.send_header("Auth-Port", "143")
        # self-delimiting answer: wrk mis-counts answers that end by closing
        self.send_header("Content-Length", "0")
        self.end_headers()


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
