"""Who may use the app: only its own page, opened from the address it printed (as Jupyter does it).

A secret token is made at each start and printed in the app's address (`http://127.0.0.1:7860/?token=...`).
Opening that address exchanges the token for a cookie (HttpOnly, SameSite=Strict, named after the port) and
redirects to the bare address; every API request must bring the cookie. A request is refused when:
- its Host header is not a name the app serves under (the names of --host, with the port): a page of another
  site that points its own host name at this machine (DNS rebinding) gets nothing;
- it comes from another page: an Origin header that is not the app's own, or Sec-Fetch-Site `cross-site` or
  `same-site` (a page on another port of the same host is same-site, and would carry the cookie);
- it is an API request without the cookie.
The static page itself loads without the token (it holds no secret) and tells the user to open the printed
address.
"""
import hmac
import ipaddress
import socket
from urllib.parse import parse_qs, urlsplit

from utils.errors import UserError

LOOPBACK_NAMES = ('localhost', '127.0.0.1', '::1')
WILDCARD_HOSTS = ('', '0.0.0.0', '::')
NO_TOKEN = ('this page has no access to the app: open the address app.py printed at start (it ends with '
            '?token=...; the token changes at every start)')
FROM_ANOTHER_PAGE = 'refused: the request came from a page that is not the app\'s own'
UNKNOWN_HOST = 'refused: unknown Host header; open the address app.py printed'


def resolved_addresses(host):
    """The IP addresses `host` names (a UserError when it names none)."""
    try:
        infos = socket.getaddrinfo(host or None, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise UserError(f'--host {host}: not an address or a name of this machine ({error.strerror})') from None
    return [ipaddress.ip_address(info[4][0].split('%')[0]) for info in infos]


def is_loopback(host):
    """Whether serving on `host` keeps the app to this machine (127.0.0.0/8, ::1, a name of them only)."""
    return host not in WILDCARD_HOSTS and all(address.is_loopback for address in resolved_addresses(host))


def _machine_names():
    """The names other machines may reach this one by: its host name, full name and their addresses."""
    names = {socket.gethostname(), socket.getfqdn()}
    for name in list(names):
        try:
            names |= {info[4][0] for info in socket.getaddrinfo(name, None)}
        except socket.gaierror:
            continue
    return names


def served_names(host):
    """The host names (and addresses) a browser may reach the app by when it serves on `host`."""
    names = {host.lower()}
    if host in WILDCARD_HOSTS:
        names = set(LOOPBACK_NAMES) | {name.lower() for name in _machine_names()}
    elif host.lower() in LOOPBACK_NAMES:
        names |= set(LOOPBACK_NAMES)
    return names


def host_headers(names, port):
    """The Host header values that name the app: each name with the port, and without it on port 80 (browsers
    leave the default port out)."""
    values = set()
    for name in names:
        bracketed = f'[{name}]' if ':' in name else name
        values.add(f'{bracketed}:{port}')
        if port == 80:
            values.add(bracketed)
    return values


class Access:
    def __init__(self, host, port, token):
        self.token = token
        self.cookie_name = f'afburr_token_{port}'
        self.hosts = host_headers(served_names(host), port)
        shown = socket.gethostname() if host in WILDCARD_HOSTS else host
        shown = f'[{shown}]' if ':' in shown else shown
        self.url = f'http://{shown}{"" if port == 80 else f":{port}"}/?token={token}'

    def cookie(self):
        """The Set-Cookie value that hands the token to the browser."""
        return f'{self.cookie_name}={self.token}; HttpOnly; SameSite=Strict; Path=/'

    def refusal(self, headers, api):
        """(status, message) refusing a request with these headers, or None to serve it. `api`: the request
        reads or changes the app's state (the static page is read by anyone who can reach the app)."""
        host = (headers.get('Host') or '').lower()
        if host not in self.hosts:
            return 403, UNKNOWN_HOST
        if not api:
            return None
        origin = headers.get('Origin')
        if (origin is not None and origin.lower() != f'http://{host}') \
                or headers.get('Sec-Fetch-Site') in ('cross-site', 'same-site'):
            return 403, FROM_ANOTHER_PAGE
        if not self.has_token(headers):
            return 403, NO_TOKEN
        return None

    def has_token(self, headers):
        """Whether the request brings this run's token in its cookie."""
        for header in headers.get_all('Cookie') or ():
            for pair in header.split(';'):
                name, _, value = pair.strip().partition('=')
                if name == self.cookie_name and hmac.compare_digest(value.encode(), self.token.encode()):
                    return True
        return False

    def offered_token(self, path):
        """Whether `path` (with its query) brings this run's token, to exchange for the cookie."""
        given = parse_qs(urlsplit(path).query).get('token', [''])[-1]
        return hmac.compare_digest(given.encode(), self.token.encode())
