"""glance-api with the reserved stores, seen from a client over HTTP.

One glance-api, configured as the demo's (stores fast, the default, and
cheap; both reserved stores), serves every test here.  Each test checks
what a user sees: the status and body of the responses, the image's
state, and the files in the stores' datadirs.
"""

import os
import time
import uuid

import pytest

import glance_demo
from glance_http import md5
from glance_http import message
from glance_http import settled

STAGING = glance_demo.STAGING_STORE
TASKS = glance_demo.TASKS_STORE
RESERVED_NAMES = [STAGING, TASKS, 'OS_GLANCE_STAGING_STORE',
                  'os_glance_anything']


def data_of(size):
    """Random bytes: no two images share a checksum."""
    return os.urandom(size)


def files_in(layout, store):
    return glance_demo.list_files(layout.datadirs[store])


def staged_path(layout, image_id):
    return os.path.join(layout.datadirs[STAGING], image_id)


def read(path):
    with open(path, 'rb') as f:
        return f.read()


def stores_holding(layout, image_id):
    """The stores with a file named after the image in their datadir."""
    return [name for name in layout.datadirs
            if image_id in files_in(layout, name)]


@pytest.fixture
def staged(glance, layout):
    """An image in 'uploading' with 3 MiB staged; deleted afterwards."""
    image = glance.create_image('staged')
    data = data_of(3 << 20)
    resp = glance.stage(image['id'], data)
    assert resp.status_code == 204, resp.text
    yield image['id'], data
    glance.delete(image['id'])


# ------------------------------------------------------------ what is seen

def test_stores_info_lists_only_the_operator_stores(glance):
    resp = glance.request('GET', '/v2/info/stores')
    assert resp.status_code == 200, resp.text
    stores = resp.json()['stores']
    assert sorted(s['id'] for s in stores) == ['cheap', 'fast']
    assert [s['id'] for s in stores if s.get('default')] == ['fast']
    assert 'os_glance' not in resp.text


def test_reserved_stores_are_enabled_though_hidden(layout):
    # glance_store creates a file store's datadir when it creates the
    # store: both reserved stores exist.
    for name in glance_demo.RESERVED_STORES:
        assert os.path.isdir(layout.datadirs[name]), name


def test_new_image_response_names_only_the_operator_stores(glance):
    resp = glance.request('POST', '/v2/images', json={'name': 'headers'})
    assert resp.status_code == 201, resp.text
    assert resp.headers['OpenStack-image-store-ids'] == 'fast,cheap'
    assert resp.headers['OpenStack-image-import-methods'] == \
        'glance-direct,web-download'
    glance.delete(resp.json()['id'])


# ---------------------------------------------------------------- imports

def test_glance_direct_stages_then_imports_into_the_store_named(
        glance, layout):
    image_id = glance.create_image('glance-direct')['id']
    data = data_of((8 << 20) + 123)

    resp = glance.stage(image_id, data)
    assert resp.status_code == 204, resp.text
    assert glance.status(image_id) == 'uploading'
    assert files_in(layout, STAGING) == [image_id]
    assert read(staged_path(layout, image_id)) == data

    image, seen = glance.import_and_wait(image_id, store='cheap')
    assert image['status'] == 'active', seen
    assert image['stores'] == 'cheap'
    assert image['size'] == len(data)
    assert image['checksum'] == md5(data)
    assert settled(lambda: stores_holding(layout, image_id),
                   ['cheap']) == ['cheap']
    assert read(os.path.join(layout.datadirs['cheap'], image_id)) == data

    resp = glance.download(image_id)
    assert resp.status_code == 200
    assert resp.content == data
    assert resp.headers['Content-MD5'] == md5(data)

    assert settled(lambda: files_in(layout, STAGING), []) == []
    # The deprecated node_staging_uri (file:///tmp/staging/) is not used.
    assert not os.path.exists('/tmp/staging/' + image_id)
    assert glance.delete(image_id).status_code == 204


def test_glance_direct_without_a_store_goes_to_the_default(
        glance, layout, staged):
    image_id, data = staged
    image, seen = glance.import_and_wait(image_id)
    assert image['status'] == 'active', seen
    assert image['stores'] == glance_demo.DEFAULT_STORE
    assert image['checksum'] == md5(data)
    assert settled(lambda: stores_holding(layout, image_id),
                   [glance_demo.DEFAULT_STORE]) == \
        [glance_demo.DEFAULT_STORE]


def test_web_download_goes_through_staging_into_the_default(
        glance, layout, file_server):
    data = data_of((5 << 20) + 7)
    name = 'web-%s.raw' % uuid.uuid4().hex
    with open(os.path.join(file_server.directory, name), 'wb') as f:
        f.write(data)
    image_id = glance.create_image('web-download')['id']

    image, seen = glance.import_and_wait(image_id, method='web-download',
                                         uri=file_server.url(name))
    assert image['status'] == 'active', seen
    assert image['stores'] == glance_demo.DEFAULT_STORE
    assert image['checksum'] == md5(data)
    assert glance.download(image_id).content == data
    assert settled(lambda: stores_holding(layout, image_id),
                   [glance_demo.DEFAULT_STORE]) == \
        [glance_demo.DEFAULT_STORE]
    assert settled(lambda: files_in(layout, STAGING), []) == []
    assert glance.delete(image_id).status_code == 204


# ------------------------------------------------------------- bad inputs

@pytest.mark.parametrize('store', RESERVED_NAMES)
def test_upload_naming_a_reserved_store_is_refused(glance, layout, store):
    image_id = glance.create_image('upload-reserved')['id']
    resp = glance.upload(image_id, data_of(1 << 20), store=store)
    assert resp.status_code == 400, resp.text
    assert "Store '%s' is reserved for Glance's internal use" % store in \
        message(resp)
    assert glance.status(image_id) == 'queued'
    assert stores_holding(layout, image_id) == []
    assert glance.delete(image_id).status_code == 204


@pytest.mark.parametrize('store', RESERVED_NAMES)
def test_import_naming_a_reserved_store_is_refused(glance, layout, staged,
                                                   store):
    image_id, data = staged
    resp = glance.import_image(image_id, store=store)
    assert resp.status_code == 400, resp.text
    assert "Store '%s' is reserved for Glance's internal use" % store in \
        message(resp)
    # Nothing happened: the staged data waits for a proper import.
    assert glance.status(image_id) == 'uploading'
    assert stores_holding(layout, image_id) == [STAGING]
    assert read(staged_path(layout, image_id)) == data


def test_web_download_naming_a_reserved_store_is_refused(glance, layout,
                                                         file_server):
    image_id = glance.create_image('web-reserved')['id']
    resp = glance.import_image(image_id, method='web-download',
                               uri=file_server.url('anything.raw'),
                               store=STAGING)
    assert resp.status_code == 400, resp.text
    assert 'reserved' in message(resp)
    assert glance.status(image_id) == 'queued'
    assert stores_holding(layout, image_id) == []
    assert glance.delete(image_id).status_code == 204


def test_upload_to_an_unknown_store_is_refused(glance, layout):
    image_id = glance.create_image('upload-unknown')['id']
    resp = glance.upload(image_id, data_of(1 << 20), store='nowhere')
    assert resp.status_code == 400, resp.text
    assert 'nowhere not found' in message(resp)
    assert glance.status(image_id) == 'queued'
    assert stores_holding(layout, image_id) == []
    assert glance.delete(image_id).status_code == 204


def test_import_into_an_unknown_store_is_refused(glance, layout, staged):
    image_id, data = staged
    resp = glance.import_image(image_id, store='nowhere')
    # As in the base release: an unknown store is a conflict on import.
    assert resp.status_code == 409, resp.text
    assert 'nowhere not found' in message(resp)
    assert glance.status(image_id) == 'uploading'
    assert stores_holding(layout, image_id) == [STAGING]
    assert read(staged_path(layout, image_id)) == data


def test_staging_twice_is_refused_and_keeps_the_first_data(
        glance, layout, staged):
    image_id, data = staged
    resp = glance.stage(image_id, data_of(2 << 20))
    assert resp.status_code == 409, resp.text
    assert glance.status(image_id) == 'uploading'
    assert read(staged_path(layout, image_id)) == data


def test_staged_data_survives_a_refusal_and_imports(glance, layout,
                                                    staged):
    image_id, data = staged
    assert glance.import_image(image_id, store=STAGING).status_code == 400
    image, seen = glance.import_and_wait(image_id, store='cheap')
    assert image['status'] == 'active', seen
    assert image['checksum'] == md5(data)
    assert settled(lambda: stores_holding(layout, image_id),
                   ['cheap']) == ['cheap']


def test_staging_more_than_the_size_cap_is_refused_and_leaves_nothing(
        glance, layout, image_size_cap):
    image_id = glance.create_image('too-big')['id']
    resp = glance.stage(image_id, data_of(image_size_cap + 1))
    assert resp.status_code == 413, resp.text
    assert 'too large' in message(resp)
    assert glance.status(image_id) == 'queued'
    assert stores_holding(layout, image_id) == []
    assert glance.delete(image_id).status_code == 204


def test_failed_import_keeps_the_staged_data_for_another_try(
        glance, layout, staged):
    image_id, data = staged
    # Make the import into cheap fail: a file of that name is there.
    in_the_way = os.path.join(layout.datadirs['cheap'], image_id)
    with open(in_the_way, 'wb') as f:
        f.write(b'in the way')
    try:
        time.sleep(1.1)     # updated_at has a resolution of one second
        image, seen = glance.import_and_wait(image_id, store='cheap')
    finally:
        os.unlink(in_the_way)
    assert image['status'] == 'uploading', seen
    assert read(staged_path(layout, image_id)) == data
    logged = ('import of image %s failed; the image is uploading again'
              % image_id)

    def log_has_it():
        with open(layout.log) as f:
            return logged in f.read()
    assert settled(log_has_it, True)

    image, seen = glance.import_and_wait(image_id, store='fast')
    assert image['status'] == 'active', seen
    assert image['stores'] == 'fast'
    assert glance.download(image_id).content == data
    assert settled(lambda: files_in(layout, STAGING), []) == []


def test_glance_direct_refuses_a_uri(glance, layout, staged):
    # glance-direct imports what was staged.  A 'uri' in the request
    # must not make glance-api read another file of its host (here its
    # own configuration) or another image's staged data.
    image_id, data = staged
    other = glance.create_image('someone-else')['id']
    assert glance.stage(other, b'not yours').status_code == 204
    for uri in ('file://' + layout.conf,
                'file://' + staged_path(layout, other)):
        resp = glance.request('POST', '/v2/images/%s/import' % image_id,
                              json={'method': {'name': 'glance-direct',
                                               'uri': uri}})
        assert resp.status_code == 400, resp.text
        assert ("The glance-direct import method imports the data staged "
                "for the image and takes no 'uri'." in message(resp))
    assert glance.status(image_id) == 'uploading'
    assert read(staged_path(layout, image_id)) == data
    assert read(staged_path(layout, other)) == b'not yours'
    assert os.path.exists(layout.conf)
    assert glance.delete(other).status_code == 204


def test_importing_an_image_never_staged_is_refused(glance, layout):
    image_id = glance.create_image('never-staged')['id']
    resp = glance.import_image(image_id, store='cheap')
    assert resp.status_code == 409, resp.text
    assert 'needs to be staged' in message(resp)
    assert glance.status(image_id) == 'queued'
    assert stores_holding(layout, image_id) == []
    assert glance.delete(image_id).status_code == 204


def test_deleting_during_uploading_removes_the_staged_data(glance, layout):
    image_id = glance.create_image('delete-uploading')['id']
    assert glance.stage(image_id, data_of(2 << 20)).status_code == 204
    assert glance.status(image_id) == 'uploading'
    assert os.path.exists(staged_path(layout, image_id))

    resp = glance.delete(image_id)
    assert resp.status_code == 204, resp.text
    assert glance.request('GET', '/v2/images/' + image_id).status_code == \
        404
    assert stores_holding(layout, image_id) == []


def _all_files(top):
    return set(glance_demo.list_files(top))


@pytest.mark.parametrize('image_id', [
    '..%2F..%2Fescaped-1',
    '..%2F..%2F..%2Fescaped-2',
    '%2e%2e%2F%2e%2e%2Fescaped-3',
    '..%5C..%5Cescaped-4',
    '..',
    '%2e%2e',
    'not-a-uuid',
    '%00',
    'x' * 300,
    str(uuid.UUID(int=0)),
], ids=lambda image_id: image_id[:40])
def test_malformed_image_id_on_the_stage_url(glance, layout, image_id):
    base = layout.base
    before = _all_files(base)
    before_parent = _all_files(os.path.dirname(base))
    status, body = glance.raw(
        'PUT', '/v2/images/%s/stage' % image_id, b'not an image',
        {'Content-Type': 'application/octet-stream'})
    assert status == 404, body
    # No file may appear, in the staging datadir or anywhere else (the
    # ids above point at the demo's base directory and its parent).
    assert _all_files(base) - before == set()
    assert _all_files(os.path.dirname(base)) - before_parent == set()
