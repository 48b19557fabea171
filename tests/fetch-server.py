#!/usr/bin/python3
# HTTP(S) server for test-fetch, on 127.0.0.1 only.
#
# Usage: fetch-server.py DIR.  Serves DIR/www on four ephemeral ports:
# "good" (DIR/good.pem, DIR/good.key), "otherca" (otherca.*), "othername"
# (othername.*) over TLS, and "plain" without; prints
# "good=P otherca=P othername=P plain=P" once all listen, and exits when
# its standard input closes.  A few paths answer specially, see do_GET.

import http.server
import os
import ssl
import sys
import threading

ROOT = sys.argv[1]
WWW = os.path.join(ROOT, "www")


class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=WWW, **kwargs)

    def log_message(self, format, *args):
        pass

    def head(self, status, headers):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()

    def do_GET(self):
        if self.path == "/redirect":
            self.head(302, [("Location", "/jwks.json"), ("Content-Length", "0")])
        elif self.path == "/big":
            # announced too large: the client must stop at the headers
            self.head(200, [("Content-Length", str(2 << 20))])
            self.wfile.write(b"x" * (2 << 20))
        elif self.path == "/big-chunked":
            # not announced: the client must stop while reading
            self.protocol_version = "HTTP/1.1"
            self.head(200, [("Transfer-Encoding", "chunked")])
            chunk = b"x" * 65536
            for _ in range(32):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/close-delimited":
            # HTTP/1.0 without Content-Length: the body ends with the
            # connection (what openssl s_server -WWW does)
            self.head(200, [("Content-Type", "application/json")])
            self.wfile.write(b'{"keys":[]}')
        elif self.path == "/chunked":
            self.protocol_version = "HTTP/1.1"
            self.head(200, [("Transfer-Encoding", "chunked"), ("Connection", "close")])
            for part in (b'{"keys":', b"[]}"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/big-header":
            self.head(200, [("Content-Type", "a" * 65536), ("Content-Length", "2")])
            self.wfile.write(b"{}")
        elif self.path == "/stall-body":
            # a part of the body, then nothing until the client leaves
            self.head(200, [("Content-Length", "100")])
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            self.rfile.read(1)
        else:
            super().do_GET()


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # failed handshakes and clients that hang up are the point


def serve(name, tls):
    srv = Server(("127.0.0.1", 0), Handler)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(ROOT, name + ".pem"), os.path.join(ROOT, name + ".key"))
        # the handshake happens in the handler's thread, not in accept()
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return "%s=%d" % (name, srv.server_address[1])


ports = [serve("good", True), serve("otherca", True), serve("othername", True),
         serve("plain", False)]
print(" ".join(ports), flush=True)
sys.stdin.read()
os._exit(0)
