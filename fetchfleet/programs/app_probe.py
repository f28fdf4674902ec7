"""app_probe SOCKET: GET /version and /healthz from gunicorn over its unix socket (behind nginx,
so a probe sees the app itself). Runs on a web host with the system python3; prints one JSON
object {url: {status, body}}, status 0 when the socket did not answer."""

import http.client
import json
import socket
import sys


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def probe(path, urls=("/version", "/healthz")):
    out = {}
    for url in urls:
        try:
            conn = UnixConnection(path)
            conn.request("GET", url)
            resp = conn.getresponse()
            out[url] = {"status": resp.status, "body": resp.read().decode(errors="replace")[:400]}
        except Exception as err:
            out[url] = {"status": 0, "body": f"{type(err).__name__}: {err}"}
    return out


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1])))
