"""A real HTTP server on 127.0.0.1 for download tests: in-memory files, Range support, cut transfers,
and answers as the Hugging Face Hub gives them.

With hub=True a file is served at `/{repo}/resolve/{revision}/{name}` as the Hub serves a file
without Xet storage: HEAD and GET answer with `X-Repo-Commit` (the commit the revision points to),
`ETag` (the content's sha256, quoted) and `Content-Length`; a missing file is a 404 with
`X-Error-Code: EntryNotFound`. huggingface_hub's hf_hub_download needs the commit and the ETag to
place the file in its cache. `/api/models/{repo}/tree/{revision}` lists the repository's files and folders
as the Hub's tree API does with recursive=true (one page: the Hub pages by 1000 entries), which
huggingface_hub's list_repo_files reads. GET requests are recorded in `.requests`, HEAD requests in `.heads`.
"""
import hashlib
import http.server
import json
import posixpath
import threading
import urllib.parse

HUB_COMMIT = 'a' * 40


def hub_files(repo, files, revision='main'):
    """{url path: bytes} for `files` ({file name: bytes}) in a Hub repository `repo` at `revision`."""
    return {f'/{repo}/resolve/{revision}/{name}': body for name, body in files.items()}


def _tree(files, path):
    """The Hub's recursive tree listing (entries of folders and files) of the repository and revision in an
    `/api/models/{repo}/tree/{revision}` path, or None when `path` is no such request."""
    api_path = urllib.parse.urlsplit(path).path
    parts = api_path.split('/')
    if not api_path.startswith('/api/models/') or len(parts) != 7 or parts[5] != 'tree':
        return None
    prefix = f'/{parts[3]}/{parts[4]}/resolve/{parts[6]}/'
    entries, folders = [], set()
    for url_path, body in files.items():
        if url_path.startswith(prefix):
            name = url_path[len(prefix):]
            entries.append({'type': 'file', 'oid': hashlib.sha1(body).hexdigest(), 'size': len(body), 'path': name})
            folder = posixpath.dirname(name)
            while folder:
                folders.add(folder)
                folder = posixpath.dirname(folder)
    return [{'type': 'directory', 'oid': '0' * 40, 'size': 0, 'path': folder} for folder in sorted(folders)] + entries


class FileHandler(http.server.BaseHTTPRequestHandler):
    """Serves the server's in-memory files with Content-Length, and Range requests when enabled."""

    def _body(self):
        """The file at the request's path as sent, else with its percent-escapes decoded (as the Hub's clients
        quote file names), or None."""
        files = self.server.files
        return files.get(self.path, files.get(urllib.parse.unquote(self.path)))

    def _hub_headers(self, body):
        if self.server.hub:
            self.send_header('X-Repo-Commit', HUB_COMMIT)
            if body is not None:
                self.send_header('ETag', f'"{hashlib.sha256(body).hexdigest()}"')
            else:
                self.send_header('X-Error-Code', 'EntryNotFound')

    def _missing(self):
        self.send_response(404)
        self._hub_headers(None)
        self.send_header('Content-Length', '0')
        self.end_headers()

    def do_HEAD(self):
        self.server.heads.append(self.path)
        body = self._body()
        if body is None:
            self._missing()
            return
        self.send_response(200)
        self._hub_headers(body)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()

    def do_GET(self):
        server = self.server
        range_header = self.headers.get('Range')
        server.requests.append((self.path, range_header))
        tree = _tree(server.files, self.path) if server.hub else None
        if tree is not None:
            self._send_json(tree)
            return
        body = self._body()
        if body is None:
            self._missing()
            return
        start = 0
        if range_header and server.supports_range:
            start = int(range_header.removeprefix('bytes=').split('-')[0])
            self.send_response(206)
            self.send_header('Content-Range', f'bytes {start}-{len(body) - 1}/{len(body)}')
        else:
            self.send_response(200)
        self._hub_headers(body)
        payload = body[start:]
        self.send_header('Content-Length', str(len(payload)))
        self.end_headers()
        if server.transfers_to_cut > 0:  # send half the promised bytes, then hang up
            server.transfers_to_cut -= 1
            self.wfile.write(payload[:len(payload) // 2])
            self.close_connection = True
            return
        self.wfile.write(payload)

    def _send_json(self, value):
        payload = json.dumps(value).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def start_server(files, supports_range=True, transfers_to_cut=0, hub=False):
    """Serve `files` ({url path: bytes}) on a free port; returns (base URL, server with .requests and .heads)."""
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), FileHandler)
    server.files = files
    server.supports_range = supports_range
    server.transfers_to_cut = transfers_to_cut
    server.hub = hub
    server.requests = []
    server.heads = []
    threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True).start()
    return f'http://127.0.0.1:{server.server_address[1]}', server
