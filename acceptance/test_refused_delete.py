"""A refused DELETE of an image leaves the data staged for its import.

glance-api answers 403 when the image is protected, when the policy
forbids the delete, and when the image belongs to another project; the
staged data must then stay, byte for byte, and the import still work.
A glance-api of this module's own serves these tests, since one of them
changes its policy file.
"""

import json
import os

import pytest

import glance_demo
import glance_http
from glance_http import message

STAGING = glance_demo.STAGING_STORE
PATCH = 'application/openstack-images-v2.1-json-patch'


@pytest.fixture
def owner(own_api):
    return glance_http.Glance(own_api.url)


@pytest.fixture
def admin(own_api):
    client = glance_http.Glance(own_api.url)
    client.session.headers['X-Roles'] = 'admin,member'
    return client


@pytest.fixture
def stranger(own_api):
    """A member of another project."""
    client = glance_http.Glance(own_api.url)
    client.session.headers['X-Tenant-Id'] = 'another-project'
    return client


def staged_path(api, image_id):
    return os.path.join(api.layout.datadirs[STAGING], image_id)


def read(path):
    with open(path, 'rb') as f:
        return f.read()


def create_staged(client, own_api, **properties):
    """An image of the demo project with 1 MiB staged; (id, data)."""
    body = {'name': 'refused-delete', 'disk_format': 'raw',
            'container_format': 'bare'}
    body.update(properties)
    resp = client.request('POST', '/v2/images', json=body)
    assert resp.status_code == 201, resp.text
    image_id = resp.json()['id']
    data = os.urandom(1 << 20)
    resp = client.stage(image_id, data)
    assert resp.status_code == 204, resp.text
    assert read(staged_path(own_api, image_id)) == data
    return image_id, data


def assert_refused(client, owner, own_api, image_id, data):
    resp = client.delete(image_id)
    assert resp.status_code == 403, resp.text
    # Nothing changed: the image, its staged data.
    assert owner.status(image_id) == 'uploading'
    assert read(staged_path(own_api, image_id)) == data
    return message(resp)


def assert_imports(owner, own_api, image_id, data):
    image, seen = owner.import_and_wait(image_id, store='cheap')
    assert image['status'] == 'active', seen
    resp = owner.download(image_id)
    assert resp.status_code == 200
    assert resp.content == data


def test_protected_image(owner, own_api):
    image_id, data = create_staged(owner, own_api, protected=True)
    text = assert_refused(owner, owner, own_api, image_id, data)
    assert 'protected' in text
    assert_imports(owner, own_api, image_id, data)


def test_image_of_another_project(owner, admin, stranger, own_api):
    image_id, data = create_staged(admin, own_api, visibility='public')
    assert stranger.status(image_id) == 'uploading'
    assert_refused(stranger, owner, own_api, image_id, data)
    assert_imports(owner, own_api, image_id, data)


def test_policy_refusal(owner, own_api):
    image_id, data = create_staged(owner, own_api)
    policy = own_api.layout.policy
    with open(policy) as f:
        original = f.read()
    rules = json.loads(original)
    rules['delete_image'] = '!'
    try:
        with open(policy, 'w') as f:
            json.dump(rules, f)
        assert_refused(owner, owner, own_api, image_id, data)
    finally:
        with open(policy, 'w') as f:
            f.write(original)
    assert_imports(owner, own_api, image_id, data)


def test_allowed_delete_removes_staged_data(owner, own_api):
    # The control: once the image may go, its staged data goes with it.
    image_id, data = create_staged(owner, own_api, protected=True)
    assert_refused(owner, owner, own_api, image_id, data)
    resp = owner.request(
        'PATCH', '/v2/images/' + image_id,
        data=json.dumps([{'op': 'replace', 'path': '/protected',
                          'value': False}]),
        headers={'Content-Type': PATCH})
    assert resp.status_code == 200, resp.text
    resp = owner.delete(image_id)
    assert resp.status_code == 204, resp.text
    assert not os.path.exists(staged_path(own_api, image_id))
    resp = owner.request('GET', '/v2/images/' + image_id)
    assert resp.status_code == 404
