"""Hostile input: store names and image ids a client should not get away with.

Every place a client can name a store with Stein's Images API is tried:
the X-Image-Meta-Store header of an upload (PUT /file), of a
glance-direct import and of a web-download import (POST /import), and
the image properties that hold store names (``backend``, a read-only
property of the schema, and ``stores``, the field the responses fill in).
The import body takes no store: Stein reads only ``method.name`` and
``method.uri`` from it, and fields such as ``stores`` are ignored.

Every hostile request gets a 4xx with a message saying what is wrong, no
file appears anywhere under the glance-api's base directory (only its log
may change), and the image it aimed at is unchanged.  test_api.py already
covers the plain reserved names and an unknown store on upload and
import, and malformed ids on the stage URL; this module adds variants of
them, and the import URL.

What a client sees that is worth knowing:

* HTTP strips spaces and tabs around a header value, so
  ' os_glance_staging_store\\t' is refused naming 'os_glance_staging_store'.
* Header bytes reach Glance decoded as ISO-8859-1 (PEP 3333): the UTF-8
  name 'ståre' comes back in the message as 'stÃ¥re'.
* The messages quote the name or id whole, 10,000 characters included.
* A header line longer than 64 KiB is refused by the HTTP server itself
  (400 Header Line Too Long), and a request line longer than 8 KiB too
  (414 Request URI Too Long); neither has a body, the reason phrase is the
  message.
* eventlet drops a header with a space before its colon instead of
  refusing the request: the store it names is never seen.
"""

import json
import os

import pytest

import glance_demo
from glance_http import Glance
from glance_http import message
from glance_http import snapshot

STAGING = glance_demo.STAGING_STORE
TASKS = glance_demo.TASKS_STORE

RESERVED_MESSAGE = ("Store '%s' is reserved for Glance's internal use and "
                    "cannot hold image data.")
UPLOAD_UNKNOWN = 'Store for identifier %s not found'
IMPORT_UNKNOWN = 'Store for scheme %s not found'


def latin1(value):
    """What Glance reads from header bytes (PEP 3333), spaces stripped."""
    return value.decode('latin-1').strip(' \t')


def squeeze(text):
    return ' '.join(text.split())


# (test id, X-Image-Meta-Store bytes, reserved?)  The plain reserved
# names, 'OS_GLANCE_STAGING_STORE', 'os_glance_anything' and 'nowhere' are
# in test_api.py.
STORE_HEADERS = [
    ('mixed-case', b'Os_Glance_Tasks_Store', True),
    ('leading-space', b' os_glance_staging_store', True),
    ('trailing-tab', b'os_glance_tasks_store\t', True),
    ('tabs-and-spaces', b'\t os_glance_staging_store \t', True),
    ('bare-prefix', b'os_glance_', True),
    ('bare-prefix-upper', b'OS_GLANCE_', True),
    ('reserved-then-nul', b'os_glance_staging_store\x00', True),
    ('reserved-list', b'os_glance_staging_store,fast', True),
    ('long-reserved', b'os_glance_' + b'x' * 10000, True),
    ('non-ascii-reserved', 'os_glance_ståre'.encode('utf-8'), True),
    ('long-unknown', b'x' * 10000, False),
    ('non-ascii', 'ståre'.encode('utf-8'), False),
    ('non-ascii-cjk', '仓库'.encode('utf-8'), False),
    ('latin-1-bytes', b'\xff\xfe', False),
    ('nul-then-reserved', b'\x00os_glance_staging_store', False),
    ('list-then-reserved', b'fast,os_glance_staging_store', False),
    ('empty', b'', False),
    ('blank', b' \t ', False),
]
STORE_IDS = [case[0] for case in STORE_HEADERS]


class Target(object):
    """An image that hostile requests aim at, and what must not change."""

    def __init__(self, glance, layout, image_id, staged=None):
        self.glance = glance
        self.layout = layout
        self.image_id = image_id
        self.staged = staged

    def staged_path(self):
        return os.path.join(self.layout.datadirs[STAGING], self.image_id)

    def __enter__(self):
        self.image = self.glance.image(self.image_id)
        self.files = snapshot(self.layout.base)
        self.parent = set(os.listdir(os.path.dirname(self.layout.base)))
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            return False
        # Only the log may change: no file written, moved or removed.
        after = snapshot(self.layout.base)
        log = os.path.relpath(self.layout.log, self.layout.base)
        changed = sorted(path for path in set(after) | set(self.files)
                         if path != log and
                         after.get(path) != self.files.get(path))
        assert changed == [], 'files changed under %s' % self.layout.base
        assert set(os.listdir(os.path.dirname(self.layout.base))) == \
            self.parent
        assert self.glance.image(self.image_id) == self.image
        if self.staged is not None:
            with open(self.staged_path(), 'rb') as f:
                assert f.read() == self.staged
        return False


@pytest.fixture(scope='module')
def queued(api):
    """A queued image, aimed at by uploads and web-downloads."""
    glance = Glance(api.url)
    image_id = glance.create_image('hostile-queued')['id']
    yield image_id
    glance.delete(image_id)


@pytest.fixture(scope='module')
def staged(api):
    """An image with 1 MiB staged, aimed at by glance-direct imports."""
    glance = Glance(api.url)
    image_id = glance.create_image('hostile-staged')['id']
    data = os.urandom(1 << 20)
    resp = glance.stage(image_id, data)
    assert resp.status_code == 204, resp.text
    yield image_id, data
    glance.delete(image_id)


def in_reserved_stores(layout, image_id):
    return [name for name in glance_demo.RESERVED_STORES
            if image_id in os.listdir(layout.datadirs[name])]


def store_header(value):
    return [('X-Image-Meta-Store', value)]


def assert_store_refused(resp, value, reserved, unknown_status,
                         unknown_message):
    shown = latin1(value)
    if reserved:
        assert resp.status_code == 400, resp.text
        assert squeeze(RESERVED_MESSAGE % shown) in message(resp)
    else:
        assert resp.status_code == unknown_status, resp.text
        assert squeeze(unknown_message % shown) in message(resp)


# ------------------------------------------------------- store names

@pytest.mark.parametrize('value, reserved',
                         [case[1:] for case in STORE_HEADERS], ids=STORE_IDS)
def test_upload_naming_a_hostile_store_is_refused(glance, layout, queued,
                                                  value, reserved):
    with Target(glance, layout, queued):
        resp = glance.exact(
            'PUT', '/v2/images/%s/file' % queued, b'hostile data',
            [('Content-Type', 'application/octet-stream')] +
            store_header(value))
    assert_store_refused(resp, value, reserved, 400, UPLOAD_UNKNOWN)


@pytest.mark.parametrize('value, reserved',
                         [case[1:] for case in STORE_HEADERS], ids=STORE_IDS)
def test_glance_direct_naming_a_hostile_store_is_refused(
        glance, layout, staged, value, reserved):
    image_id, data = staged
    body = json.dumps({'method': {'name': 'glance-direct'}}).encode()
    with Target(glance, layout, image_id, data):
        resp = glance.exact(
            'POST', '/v2/images/%s/import' % image_id, body,
            [('Content-Type', 'application/json')] + store_header(value))
    # As in the base release: an unknown store is a conflict on import.
    assert_store_refused(resp, value, reserved, 409, IMPORT_UNKNOWN)


@pytest.mark.parametrize('value, reserved', [
    (TASKS.encode(), True),
    (b'OS_GLANCE_STAGING_STORE', True),
    (b'os_glance_anything', True),
    (b'nowhere', False),
] + [case[1:] for case in STORE_HEADERS], ids=[
    TASKS, 'upper-case', 'os_glance_anything', 'nowhere'] + STORE_IDS)
def test_web_download_naming_a_hostile_store_is_refused(
        glance, layout, queued, file_server, value, reserved):
    body = json.dumps({'method': {
        'name': 'web-download',
        'uri': file_server.url('never-fetched.raw')}}).encode()
    with Target(glance, layout, queued):
        resp = glance.exact(
            'POST', '/v2/images/%s/import' % queued, body,
            [('Content-Type', 'application/json')] + store_header(value))
    assert_store_refused(resp, value, reserved, 409, IMPORT_UNKNOWN)


@pytest.mark.parametrize('method, path', [
    ('PUT', 'file'), ('POST', 'import')])
def test_a_store_header_longer_than_64_kib_is_refused(
        glance, layout, queued, method, path):
    with Target(glance, layout, queued):
        resp = glance.exact(
            method, '/v2/images/%s/%s' % (queued, path), b'{}',
            store_header(b'os_glance_' + b'x' * (64 << 10)))
    assert resp.status_code == 400
    assert resp.reason == 'Header Line Too Long'


def test_a_store_header_with_a_space_before_the_colon_is_not_a_store(
        glance, layout):
    # RFC 7230 wants a 400; eventlet instead drops the malformed header,
    # so glance-api never sees the name: the data goes to the default
    # store, never into a reserved one.
    image_id = glance.create_image('space-before-colon')['id']
    data = os.urandom(4096)
    resp = glance.exact(
        'PUT', '/v2/images/%s/file' % image_id, data,
        [('Content-Type', 'application/octet-stream'),
         ('X-Image-Meta-Store ', STAGING)])
    if resp.status_code != 400:
        assert resp.status_code == 204, resp.text
        image = glance.image(image_id)
        assert image['status'] == 'active'
        assert image['stores'] == glance_demo.DEFAULT_STORE
    assert in_reserved_stores(layout, image_id) == []
    assert glance.delete(image_id).status_code == 204


@pytest.mark.parametrize('prop', ['backend', 'stores'])
@pytest.mark.parametrize('how', ['create', 'patch'])
def test_image_property_naming_a_reserved_store_is_refused(glance, how,
                                                           prop):
    if how == 'create':
        resp = glance.request('POST', '/v2/images', json={
            'name': 'property-' + prop, prop: STAGING})
        image_id = resp.json()['id'] if resp.status_code == 201 else None
    else:
        image_id = glance.create_image('property-' + prop)['id']
        resp = glance.request(
            'PATCH', '/v2/images/' + image_id,
            data=json.dumps([{'op': 'add', 'path': '/' + prop,
                              'value': STAGING}]),
            headers={'Content-Type':
                     'application/openstack-images-v2.1-json-patch'})
    try:
        assert resp.status_code in (400, 403), resp.text
        assert STAGING in message(resp) or 'read-only' in message(resp)
    finally:
        if image_id:
            glance.delete(image_id)


@pytest.mark.parametrize('prop', ['backend', 'stores'])
def test_image_property_naming_a_reserved_store_never_places_data(
        glance, layout, prop):
    # Refused (see above) or ignored: whatever the property says, the data
    # goes where the request sends it, and never into a reserved store.
    resp = glance.request('POST', '/v2/images', json={
        'name': 'property-' + prop, 'disk_format': 'raw',
        'container_format': 'bare', prop: STAGING})
    if resp.status_code != 201:
        assert resp.status_code in (400, 403), resp.text
        return
    uploaded = resp.json()['id']
    assert glance.upload(uploaded, os.urandom(4096)).status_code == 204
    resp = glance.request('POST', '/v2/images', json={
        'name': 'property-' + prop, 'disk_format': 'raw',
        'container_format': 'bare', prop: TASKS})
    imported = resp.json()['id']
    assert glance.stage(imported, os.urandom(4096)).status_code == 204
    image, seen = glance.import_and_wait(imported, store='cheap')
    assert image['status'] == 'active', seen

    assert glance.image(uploaded)['stores'] == glance_demo.DEFAULT_STORE
    assert glance.image(imported)['stores'] == 'cheap'
    for image_id in (uploaded, imported):
        assert in_reserved_stores(layout, image_id) == []
        assert glance.delete(image_id).status_code == 204


def test_store_fields_in_the_import_body_are_ignored(glance, layout):
    # Stein's import takes no store from the body; fields that later
    # releases read (stores, all_stores) or a store in the method do not
    # send the data anywhere but the default store.
    image_id = glance.create_image('body-fields')['id']
    assert glance.stage(image_id, os.urandom(4096)).status_code == 204
    since = glance.image(image_id)['updated_at']
    resp = glance.request('POST', '/v2/images/%s/import' % image_id, json={
        'method': {'name': 'glance-direct', 'store': STAGING},
        'stores': [STAGING, TASKS], 'all_stores': True, 'store': TASKS,
        'backend': STAGING})
    assert resp.status_code == 202, resp.text
    image, seen = glance.wait_for_import(image_id, since)
    assert image['status'] == 'active', seen
    assert image['stores'] == glance_demo.DEFAULT_STORE
    assert in_reserved_stores(layout, image_id) == []
    assert glance.delete(image_id).status_code == 204


def test_a_header_given_twice_is_never_a_reserved_store(glance, layout,
                                                        queued, staged):
    # The HTTP server joins the values with a comma.
    twice = [('X-Image-Meta-Store', 'fast'), ('X-Image-Meta-Store', STAGING)]
    image_id, data = staged
    with Target(glance, layout, queued):
        resp = glance.exact(
            'PUT', '/v2/images/%s/file' % queued, b'hostile data',
            [('Content-Type', 'application/octet-stream')] + twice)
    assert resp.status_code == 400, resp.text
    assert UPLOAD_UNKNOWN % ('fast,' + STAGING) in message(resp)
    with Target(glance, layout, image_id, data):
        resp = glance.exact(
            'POST', '/v2/images/%s/import' % image_id,
            b'{"method": {"name": "glance-direct"}}',
            [('Content-Type', 'application/json')] + twice[::-1])
    assert resp.status_code == 400, resp.text
    assert RESERVED_MESSAGE % (STAGING + ',fast') in message(resp)


# --------------------------------------------------------- image ids

# (test id, the id as sent on the URL, status, what the message says);
# '{target}' stands for the id of the image the requests aim at.  ids with
# a slash leave the route: the router answers, not the images controller.
NOT_FOUND = 'The resource could not be found.'
NEW_IDS = [
    ('dot-dot-slash-dot-dot', '../..', 404, NOT_FOUND),
    ('slash', 'a/b', 404, NOT_FOUND),
    # http.client refuses to send a NUL in a path; Glance.exact sends it.
    ('raw-nul', b'a\x00b', 404, 'No image found with ID a\x00b'),
    # The UTF-8 bytes of 'é', read as ISO-8859-1.
    ('non-ascii', '%C3%A9', 404, 'No image found with ID \u00c3\u00a9'),
    ('4000-chars', 'x' * 4000, 404, 'No image found with ID ' + 'x' * 4000),
    ('upper-case-target', '{TARGET}', 404, 'No image found with ID {TARGET}'),
    ('target-slash-dot-dot', '{target}/..', 404, NOT_FOUND),
    ('target-encoded-slash-dot-dot', '{target}%2F..', 404, NOT_FOUND),
    ('dot-dot-encoded-slash-target', '..%2F{target}', 404, NOT_FOUND),
    ('target-then-escape', '{target}%2F..%2F..%2F..%2Fescaped', 404,
     NOT_FOUND),
]
# test_api.py tries these on the stage URL already.
ON_THE_STAGE_URL_ALREADY = [
    ('dot-dot', '..', 404, 'No image found with ID ..'),
    ('encoded-dots', '%2e%2e', 404, 'No image found with ID ..'),
    ('encoded-traversal', '%2e%2e%2f%2e%2e%2fescaped', 404, NOT_FOUND),
    ('encoded-nul', '%00', 404, 'No image found with ID \x00'),
]
LONG_ID = 'x' * 10000


def hostile_path(image_id, target, action):
    """The URL path, the target's id put in, as bytes."""
    if isinstance(image_id, str):
        image_id = image_id.format(target=target, TARGET=target.upper())
        image_id = image_id.encode('latin-1')
    return b'/v2/images/' + image_id + b'/' + action


def fill_in(text, target):
    return text.format(target=target, TARGET=target.upper())


@pytest.mark.parametrize('image_id, status, text',
                         [case[1:] for case in NEW_IDS],
                         ids=[case[0] for case in NEW_IDS])
def test_hostile_image_id_on_the_stage_url(glance, layout, queued,
                                           image_id, status, text):
    with Target(glance, layout, queued):
        resp = glance.exact(
            'PUT', hostile_path(image_id, queued, b'stage'), b'hostile data',
            [('Content-Type', 'application/octet-stream')])
    assert resp.status_code == status, resp.text
    assert fill_in(text, queued) in message(resp)


@pytest.mark.parametrize(
    'image_id, status, text',
    [case[1:] for case in NEW_IDS + ON_THE_STAGE_URL_ALREADY],
    ids=[case[0] for case in NEW_IDS + ON_THE_STAGE_URL_ALREADY])
def test_hostile_image_id_on_the_import_url(glance, layout, staged,
                                            image_id, status, text):
    target, data = staged
    body = json.dumps({'method': {'name': 'glance-direct'}}).encode()
    with Target(glance, layout, target, data):
        resp = glance.exact('POST', hostile_path(image_id, target, b'import'),
                            body, [('Content-Type', 'application/json')])
    assert resp.status_code == status, resp.text
    assert fill_in(text, target) in message(resp)


@pytest.mark.parametrize('method, path', [
    ('PUT', 'stage'), ('POST', 'import')])
def test_an_image_id_of_10000_characters_is_refused(glance, layout, queued,
                                                    method, path):
    with Target(glance, layout, queued):
        resp = glance.exact(method, '/v2/images/%s/%s' % (LONG_ID, path),
                            b'{}')
    assert resp.status_code == 414
    assert resp.reason == 'Request URI Too Long'


SLASH_REQUESTS = [
    ('PUT', '/v2/images/%2F/stage', b'hostile data',
     [('Content-Type', 'application/octet-stream')]),
    ('POST', '/v2/images/%2F/import',
     b'{"method": {"name": "glance-direct"}}',
     [('Content-Type', 'application/json')]),
]


@pytest.mark.parametrize('method, path, body, headers', SLASH_REQUESTS,
                         ids=['stage', 'import'])
def test_a_slash_for_an_image_id_changes_nothing(glance, layout, staged,
                                                 method, path, body,
                                                 headers):
    # '%2F' decodes to '/', and the router reads /v2/images///stage as
    # /v2/images/stage: the route of an image whose id is 'stage'.  So
    # the answers, as in 18.0.1, are 400 'Malformed JSON in request body.'
    # (PUT) and 405 (POST): misleading, but refusals that change nothing.
    image_id, data = staged
    with Target(glance, layout, image_id, data):
        resp = glance.exact(method, path, body, headers)
    assert 400 <= resp.status_code < 500, resp.text
    assert message(resp)
