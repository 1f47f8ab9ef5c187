"""A listener on 127.0.0.1 that records whatever reaches it.

The tests write its URL where a client could try to make glance-api send
a request (a forged image property naming the node holding staged data)
and then check that nothing ever arrived: no connection, no request.
Every connection is counted as soon as it is accepted, before a byte is
read, and every request is recorded with its method, path and headers;
it is answered 200 with an empty JSON object so that a glance-api that
did follow the URL would not stop at an error.
"""

import http.server
import json
import threading


class Listener(object):
    """A tiny HTTP server recording every connection and request."""

    def __init__(self):
        self.connections = 0
        self.requests = []
        self.lock = threading.Lock()
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def setup(self):
                with listener.lock:
                    listener.connections += 1
                super(Handler, self).setup()

            def answer(self):
                length = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(length) if length else b''
                with listener.lock:
                    listener.requests.append({
                        'method': self.command, 'path': self.path,
                        'headers': dict(self.headers.items()),
                        'body': body.decode('utf-8', 'replace')})
                reply = json.dumps({}).encode()
                self.send_response(200)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = answer
            do_HEAD = do_OPTIONS = answer

            def log_message(self, format, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                     Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = 'http://127.0.0.1:%d' % self.port
        self.thread = None

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       name='listener', daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.thread is not None:
            self.httpd.shutdown()
            self.thread.join(10)
            self.thread = None
        self.httpd.server_close()

    def received(self):
        """(connections accepted, [requests]) so far."""
        with self.lock:
            return self.connections, list(self.requests)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
