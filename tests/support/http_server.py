"""A real HTTP server on 127.0.0.1 for download tests: in-memory files, Range support, cut transfers."""
import http.server
import threading


class FileHandler(http.server.BaseHTTPRequestHandler):
    """Serves the server's in-memory files with Content-Length, and Range requests when enabled."""

    def do_GET(self):
        server = self.server
        range_header = self.headers.get('Range')
        server.requests.append((self.path, range_header))
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if range_header and server.supports_range:
            start = int(range_header.removeprefix('bytes=').split('-')[0])
            self.send_response(206)
            self.send_header('Content-Range', f'bytes {start}-{len(body) - 1}/{len(body)}')
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header('Content-Length', str(len(payload)))
        self.end_headers()
        if server.transfers_to_cut > 0:  # send half the promised bytes, then hang up
            server.transfers_to_cut -= 1
            self.wfile.write(payload[:len(payload) // 2])
            self.close_connection = True
            return
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def start_server(files, supports_range=True, transfers_to_cut=0):
    """Serve `files` ({url path: bytes}) on a free port; returns (base URL, server with .requests)."""
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), FileHandler)
    server.files = files
    server.supports_range = supports_range
    server.transfers_to_cut = transfers_to_cut
    server.requests = []
    threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True).start()
    return f'http://127.0.0.1:{server.server_address[1]}', server
