"""A small client of the Images API v2, as the acceptance tests use it.

It speaks HTTP only (requests, or http.client where the exact bytes of the
path matter) and sends the identity glance-api trusts with the
trusted-auth paste flavor.
"""

import hashlib
import html
import http.client
import os
import re
import socket
import time
import urllib.parse

import requests

import glance_demo

TIMEOUT = 60            # seconds for one request
IMPORT_TIMEOUT = 120    # seconds for an import to end


def md5(data):
    return hashlib.md5(data).hexdigest()


def snapshot(top):
    """{path relative to top: (size, mtime)} of every file below top."""
    found = {}
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue        # gone since the walk saw it
            found[os.path.relpath(path, top)] = (st.st_size, st.st_mtime_ns)
    return found


def settled(value, expected, timeout=30):
    """value(), once it equals expected or timeout seconds have passed.

    glance-api shows an imported image active before the import removes
    the staged data and records the task's success, and a failed import
    handed back before the task's failure is recorded and logged: what
    follows the change of state is waited for.
    """
    deadline = time.monotonic() + timeout
    got = value()
    while got != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        got = value()
    return got


class Response(object):
    """A response read by Glance.exact: status, reason, headers, text."""

    def __init__(self, status, reason, headers, text):
        self.status_code = status
        self.reason = reason
        self.headers = headers
        self.text = text


def _bytes(value):
    return value if isinstance(value, bytes) else value.encode('utf-8')


def message(resp):
    """The text of an error response, as a browser would show it."""
    text = re.sub(r'<[^>]+>', ' ', resp.text)
    return ' '.join(html.unescape(text).split())


class Glance(object):
    """The Images API of one glance-api, as the demo user."""

    def __init__(self, url):
        self.url = url
        self.session = requests.Session()
        self.session.headers.update(glance_demo.IDENTITY_HEADERS)

    def request(self, method, path, **kwargs):
        kwargs.setdefault('timeout', TIMEOUT)
        return self.session.request(method, self.url + path, **kwargs)

    def create_image(self, name='acceptance'):
        """Create a raw/bare image; return its representation."""
        resp = self.request('POST', '/v2/images', json={
            'name': name, 'disk_format': 'raw', 'container_format': 'bare'})
        assert resp.status_code == 201, resp.text
        return resp.json()

    def image(self, image_id):
        resp = self.request('GET', '/v2/images/' + image_id)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def status(self, image_id):
        return self.image(image_id)['status']

    def stage(self, image_id, data):
        return self.request(
            'PUT', '/v2/images/%s/stage' % image_id, data=data,
            headers={'Content-Type': 'application/octet-stream'})

    def upload(self, image_id, data, store=None):
        headers = {'Content-Type': 'application/octet-stream'}
        if store is not None:
            headers['X-Image-Meta-Store'] = store
        return self.request('PUT', '/v2/images/%s/file' % image_id,
                            data=data, headers=headers)

    def import_image(self, image_id, method='glance-direct', uri=None,
                     store=None):
        body = {'method': {'name': method}}
        if uri is not None:
            body['method']['uri'] = uri
        headers = {}
        if store is not None:
            headers['X-Image-Meta-Store'] = store
        return self.request('POST', '/v2/images/%s/import' % image_id,
                            json=body, headers=headers)

    def download(self, image_id):
        return self.request('GET', '/v2/images/%s/file' % image_id)

    def delete(self, image_id):
        return self.request('DELETE', '/v2/images/' + image_id)

    def wait_for_import(self, image_id, since, timeout=IMPORT_TIMEOUT):
        """Poll until the import ends; return the image and states seen.

        since is the image's updated_at before the import was asked for.
        The import has ended when the image is active, killed or deleted,
        or when it was updated since and is not 'importing' (a failed
        import hands the image back for another try).
        """
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            image = self.image(image_id)
            status = image['status']
            if not seen or seen[-1] != status:
                seen.append(status)
            if status in ('active', 'killed', 'deleted'):
                return image, seen
            if status != 'importing' and image['updated_at'] != since:
                return image, seen
            if time.monotonic() > deadline:
                raise AssertionError(
                    'the import of %s did not end within %d s; states '
                    'seen: %s' % (image_id, timeout, ' -> '.join(seen)))
            time.sleep(0.25)

    def import_and_wait(self, image_id, **kwargs):
        """Ask for an import (202 expected) and wait until it ends."""
        since = self.image(image_id)['updated_at']
        resp = self.import_image(image_id, **kwargs)
        assert resp.status_code == 202, resp.text
        return self.wait_for_import(image_id, since)

    def raw(self, method, path, body=b'', headers=None):
        """Send the path exactly as given; return (status, body text)."""
        parsed = urllib.parse.urlsplit(self.url)
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port,
                                          timeout=TIMEOUT)
        all_headers = dict(glance_demo.IDENTITY_HEADERS)
        all_headers.update(headers or {})
        try:
            conn.request(method, path, body=body, headers=all_headers)
            resp = conn.getresponse()
            return resp.status, resp.read().decode('utf-8', 'replace')
        finally:
            conn.close()

    def exact(self, method, path, body=b'', headers=()):
        """Send a request made of the very bytes given; return a Response.

        http.client refuses some paths (a NUL, a space) and requests
        re-encodes header values, so this writes the request itself: the
        path and the header names and values as given (str as UTF-8,
        bytes as they are).  headers is a dict or (name, value) pairs, so
        that a header may come twice.
        """
        parsed = urllib.parse.urlsplit(self.url)
        if hasattr(headers, 'items'):
            headers = list(headers.items())
        lines = [_bytes(method) + b' ' + _bytes(path) + b' HTTP/1.1',
                 b'Host: ' + _bytes(parsed.netloc), b'Connection: close',
                 b'Content-Length: %d' % len(body)]
        for name, value in (list(glance_demo.IDENTITY_HEADERS.items()) +
                            list(headers)):
            lines.append(_bytes(name) + b': ' + _bytes(value))
        request = b'\r\n'.join(lines) + b'\r\n\r\n' + body
        with socket.create_connection((parsed.hostname, parsed.port),
                                      timeout=TIMEOUT) as sock:
            sock.sendall(request)
            resp = http.client.HTTPResponse(sock, method=method)
            resp.begin()
            text = resp.read().decode('utf-8', 'replace')
        return Response(resp.status, resp.reason, resp.headers, text)
