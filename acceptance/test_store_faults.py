"""Stores that fail under a running glance-api: nothing lost, clear errors.

A glance-api of this module's own (the own_api fixture) has a directory
broken while it runs, and put back after each test:

* the datadir of the operator store ``cheap``, before a glance-direct
  import into it: the import fails, the image is handed back in
  ``uploading`` with its staged data intact, the task and the log say
  it failed, and the import succeeds once the store is back;
* the staging datadir, before a stage: the client gets a 5xx at once
  (not a hang), the image is back in ``queued``, no file is written, the
  data staged before is kept, and staging works again once it is back.

The tests run as root, for whom no permission bit makes a directory
unwritable, so a directory "fails" in the two ways that stop root too: it
is removed (moved aside, to be put back with its files), or a regular
file stands in its place, which is what a read-only datadir amounts to
for Glance (it can neither create nor write a file there).  A full disk is
not emulated: it needs a filesystem of its own (a mount), and
RLIMIT_FSIZE would fail every file glance-api writes, its log and its
database included, not one store.
"""

import contextlib
import os
import shutil
import time

import pytest

import glance_demo
from glance_http import Glance
from glance_http import md5
from glance_http import message
from glance_http import settled
from glance_http import snapshot

STAGING = glance_demo.STAGING_STORE
HOW = ['removed', 'a regular file']
STAGE_TIMEOUT = 30      # seconds: a broken staging area must not hang


class Client(Glance):
    """A client that remembers the images it creates."""

    def __init__(self, url):
        super(Client, self).__init__(url)
        self.created = []

    def create_image(self, name='acceptance'):
        image = super(Client, self).create_image(name)
        self.created.append(image['id'])
        return image


@pytest.fixture
def glance(own_api):
    """A client whose images are deleted after the test, however it ends."""
    client = Client(own_api.url)
    yield client
    for image_id in client.created:
        client.delete(image_id)


@pytest.fixture
def admin(own_api):
    """The demo user as an admin: the tasks API is for admins only."""
    client = Glance(own_api.url)
    client.session.headers['X-Roles'] = 'admin'
    return client


@pytest.fixture
def layout(own_api):
    return own_api.layout


@contextlib.contextmanager
def broken(path, how):
    """Break a datadir while glance-api runs; put it back afterwards."""
    aside = path + '.aside'
    os.rename(path, aside)
    try:
        if how == 'a regular file':
            with open(path, 'w') as f:
                f.write('not a directory\n')
        yield
    finally:
        # The tests check that glance-api wrote nothing there meanwhile.
        if os.path.isfile(path):
            os.unlink(path)
        elif os.path.isdir(path):
            shutil.rmtree(path)
        os.rename(aside, path)


def read(path):
    with open(path, 'rb') as f:
        return f.read()


def staged_path(layout, image_id):
    return os.path.join(layout.datadirs[STAGING], image_id)


def log_text(layout):
    with open(layout.log, errors='replace') as f:
        return f.read()


def tasks_of(admin, image_id):
    """The import tasks of an image, with their details."""
    resp = admin.request('GET', '/v2/tasks', params={'limit': 1000})
    assert resp.status_code == 200, resp.text
    tasks = []
    for summary in resp.json()['tasks']:
        task = admin.request('GET', '/v2/tasks/' + summary['id']).json()
        if (task['type'] == 'api_image_import' and
                task['input']['image_id'] == image_id):
            tasks.append(task)
    return tasks


def stage_new_image(glance, size=2 << 20):
    image_id = glance.create_image('store-faults')['id']
    data = os.urandom(size)
    resp = glance.stage(image_id, data)
    assert resp.status_code == 204, resp.text
    return image_id, data


def fail_import_into_cheap(glance, layout, how):
    """Stage, break cheap, import into it; return (id, data, image)."""
    image_id, data = stage_new_image(glance)
    with broken(layout.datadirs['cheap'], how):
        time.sleep(1.1)     # updated_at has a resolution of one second
        image, seen = glance.import_and_wait(image_id, store='cheap')
        assert image['status'] == 'uploading', seen
    return image_id, data, image


# ----------------------------------------------- a store that fails

@pytest.mark.parametrize('how', HOW)
def test_import_into_a_failing_store_is_handed_back_and_retried(
        glance, admin, layout, how):
    image_id, data, image = fail_import_into_cheap(glance, layout, how)
    # Retryable: the image is staged again, with its data intact.
    assert image['status'] == 'uploading'
    assert image['size'] is None and image['checksum'] is None
    assert read(staged_path(layout, image_id)) == data
    assert image_id not in os.listdir(layout.datadirs['cheap'])

    # The failure is reported in the task and in the log.
    assert settled(lambda: [task['status'] for task in tasks_of(
        admin, image_id)], ['failure']) == ['failure']
    tasks = tasks_of(admin, image_id)
    task = tasks[0]
    reason = {'removed': 'No such file or directory',
              'a regular file': 'Not a directory'}[how]
    # The task's owner learns which store failed and why, in its terms.
    assert task['message'] == ('Image %s could not be imported into store '
                               'cheap: %s' % (image_id, reason)), task
    log = log_text(layout)
    error = ("Task %s could not import image %s into store cheap: "
             "[Errno %d] %s: '%s'" % (
                 task['id'], image_id, 2 if how == 'removed' else 20,
                 reason, os.path.join(layout.datadirs['cheap'], image_id)))
    assert [line for line in log.splitlines()
            if error in line and ' ERROR ' in line], error
    assert ('import of image %s failed; the image is uploading again'
            % image_id) in log

    # Once the store is back, the same staged data imports.
    image, seen = glance.import_and_wait(image_id, store='cheap')
    assert image['status'] == 'active', seen
    assert image['stores'] == 'cheap'
    assert image['checksum'] == md5(data)
    assert glance.download(image_id).content == data
    assert settled(lambda: image_id in os.listdir(layout.datadirs[STAGING]),
                   False) is False
    assert settled(lambda: sorted(task['status'] for task in tasks_of(
        admin, image_id)), ['failure', 'success']) == ['failure', 'success']
    assert glance.delete(image_id).status_code == 204


# ------------------------------------------ the staging area fails

def stage_while_staging_is_broken(glance, layout, how):
    """Stage into a broken staging area; return what the client saw.

    An image staged before the staging area broke must come through.
    """
    before_id, before_data = stage_new_image(glance)
    image_id = glance.create_image('staging-broken')['id']
    data = os.urandom(2 << 20)
    with broken(layout.datadirs[STAGING], how):
        files = snapshot(layout.base)
        started = time.monotonic()
        resp = glance.request(
            'PUT', '/v2/images/%s/stage' % image_id, data=data,
            headers={'Content-Type': 'application/octet-stream'},
            timeout=STAGE_TIMEOUT)
        elapsed = time.monotonic() - started
        after = snapshot(layout.base)
        status = glance.status(image_id)
    changed = sorted(path for path in set(files) | set(after)
                     if files.get(path) != after.get(path))
    return {'resp': resp, 'elapsed': elapsed, 'status': status,
            'changed': changed, 'image': (image_id, data),
            'before': (before_id, before_data)}


@pytest.mark.parametrize('how', HOW)
def test_staging_area_gone_fails_fast_and_recovers(glance, layout, how):
    seen = stage_while_staging_is_broken(glance, layout, how)
    resp = seen['resp']
    assert 500 <= resp.status_code < 600, resp.text
    assert seen['elapsed'] < STAGE_TIMEOUT
    assert seen['status'] == 'queued'
    # Nothing was written but the log: the stage's lock, taken before
    # the image changes, could not be, so the image never left queued.
    assert seen['changed'] == ['glance-api.log']
    log = log_text(layout)
    assert 'Cannot stage the data of image %s in %s' % (
        seen['image'][0], layout.datadirs[STAGING]) in log

    # The staging area is back: the data staged before it broke is
    # intact, and both images import.
    before_id, before_data = seen['before']
    assert read(staged_path(layout, before_id)) == before_data
    image_id, data = seen['image']
    resp = glance.stage(image_id, data)
    assert resp.status_code == 204, resp.text
    for image_id, data in (seen['before'], seen['image']):
        image, states = glance.import_and_wait(image_id)
        assert image['status'] == 'active', states
        assert image['checksum'] == md5(data)
    assert settled(lambda: glance_demo.list_files(layout.datadirs[STAGING]),
                   []) == []


@pytest.mark.parametrize('how', HOW)
def test_staging_area_gone_is_explained_to_the_client(glance, layout, how):
    seen = stage_while_staging_is_broken(glance, layout, how)
    resp = seen['resp']
    assert 500 <= resp.status_code < 600, resp.text
    text = message(resp)
    assert 'staging' in text.lower(), text
    # Said in the client's terms, not the server's paths.
    assert layout.base not in text
