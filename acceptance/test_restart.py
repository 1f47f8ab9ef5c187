"""glance-api killed with SIGKILL in the middle of the work, then started.

A glance-api of this module's own is killed (SIGKILL to its process
group: nothing of it can tidy up) while it stages 256 MiB, or while it
imports them, and started again on the same database and directories.
What it left must never cost the client its data, nor pile up:

* a stage cut off by the kill leaves, after a restart more than a
  minute later, an image in ``queued`` and nothing in the staging store
  once the clean-up, which runs in the background, has ended: the
  client stages again and imports;
* an import cut off by the kill leaves the staged data or the imported
  image (never neither), and the image can be deleted cleanly.
"""

import os
import signal
import threading
import time

import pytest
import requests

import glance_demo
from glance_http import Glance
from glance_http import md5
from glance_http import settled

SIZE = 256 << 20
CHUNK = 1 << 20
STAGING = glance_demo.STAGING_STORE
WAIT = 60               # seconds for anything to happen
CLEANUP_ENDED = 'The clean-up of the reserved stores ended'


class Restartable(object):
    """A glance-api that can be killed and started again."""

    def __init__(self, server):
        self.server = server
        self.layout = server.layout

    @property
    def url(self):
        return self.server.url

    def start(self):
        """Start glance-api again, on the same port and database."""
        self.server = glance_demo.GlanceApi(
            self.server.python, self.layout, self.server.port)
        self.server.start()

    def kill(self):
        os.killpg(self.server.proc.pid, signal.SIGKILL)
        self.server.proc.wait(WAIT)

    def stop(self):
        if self.server is not None:
            self.server.stop()


@pytest.fixture(scope='module')
def api(tmpdir_factory, glance_python, glance_tree):
    api = Restartable(glance_demo.prepared_api(
        glance_python, glance_tree, str(tmpdir_factory.mktemp('restart'))))
    api.start()
    yield api
    api.stop()


def log_text(layout):
    with open(layout.log, errors='replace') as f:
        return f.read()


def wait_until(what, predicate):
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError('%s did not happen within %d s'
                                 % (what, WAIT))
        time.sleep(0.02)


def staging_files(layout):
    return glance_demo.list_files(layout.datadirs[STAGING])


def read(path):
    with open(path, 'rb') as f:
        return f.read()


class Sender(object):
    """Streams data in chunks; stops sending once told to, and waits."""

    def __init__(self, data, pause_after):
        self.data = data
        self.pause_after = pause_after
        self.sent = 0
        self.paused = threading.Event()
        self.release = threading.Event()

    def __iter__(self):
        for start in range(0, len(self.data), CHUNK):
            if self.sent >= self.pause_after:
                self.paused.set()
                self.release.wait(WAIT)
            chunk = self.data[start:start + CHUNK]
            self.sent += len(chunk)
            yield chunk


def test_kill_during_a_stage(api, figures):
    glance = Glance(api.url)
    image_id = glance.create_image('killed-while-staging')['id']
    data = os.urandom(SIZE)
    sender = Sender(data, pause_after=SIZE // 2)
    outcome = {}

    def stage():
        try:
            outcome['resp'] = glance.stage(image_id, iter(sender))
        except requests.RequestException as e:
            outcome['error'] = e

    thread = threading.Thread(target=stage, daemon=True)
    thread.start()
    assert sender.paused.wait(WAIT), 'the client never sent half the data'
    partial = os.path.join(api.layout.datadirs[STAGING], image_id + '.part')
    wait_until('half of the data reaching the staging store',
               lambda: os.path.exists(partial) and
               os.path.getsize(partial) >= SIZE // 4)
    api.kill()
    sender.release.set()
    thread.join(WAIT)
    assert 'resp' not in outcome, outcome['resp'].text
    assert os.path.exists(partial)     # what the kill left
    # Started again over a minute later: the stage counts as abandoned
    # (a fresher one may be another node's, on a filesystem whose locks
    # do not cross nodes).
    then = time.time() - 3600
    os.utime(partial, (then, then))

    ended = log_text(api.layout).count(CLEANUP_ENDED)
    api.start()
    glance = Glance(api.url)
    # The clean-up runs in the background once glance-api serves.
    wait_until('the clean-up',
               lambda: log_text(api.layout).count(CLEANUP_ENDED) > ended)
    assert glance.status(image_id) == 'queued'
    assert staging_files(api.layout) == []
    log = log_text(api.layout)
    assert 'Removed %s from %s: the stage of image %s did not finish' % (
        partial, STAGING, image_id) in log
    assert 'Image %s is queued again' % image_id in log

    resp = glance.stage(image_id, data)
    assert resp.status_code == 204, resp.text
    image, states = glance.import_and_wait(image_id)
    assert image['status'] == 'active', states
    assert image['checksum'] == md5(data)
    assert settled(lambda: staging_files(api.layout), []) == []
    figures.append('SIGKILL during a 256 MiB stage: restarted, image '
                   'queued, no partial file, staged again and active')
    assert glance.delete(image_id).status_code == 204


def test_kill_during_an_import(api, figures):
    glance = Glance(api.url)
    image_id = glance.create_image('killed-while-importing')['id']
    data = os.urandom(SIZE)
    resp = glance.stage(image_id, data)
    assert resp.status_code == 204, resp.text
    staged = os.path.join(api.layout.datadirs[STAGING], image_id)
    target = os.path.join(api.layout.datadirs[glance_demo.DEFAULT_STORE],
                          image_id)
    resp = glance.import_image(image_id)
    assert resp.status_code == 202, resp.text
    wait_until('the import writing into the store',
               lambda: os.path.exists(target) and
               os.path.getsize(target) > 0)
    api.kill()
    written = os.path.getsize(target)

    api.start()
    glance = Glance(api.url)
    # The node starting again ends the import it ran: never neither the
    # imported image nor the staged data, and nothing of the import that
    # stopped in the store.
    wait_until('the image leaving importing',
               lambda: glance.image(image_id)['status'] != 'importing')
    image = glance.image(image_id)
    if image['status'] == 'active':
        outcome = 'the import had finished'
    else:
        assert image['status'] == 'uploading'
        assert read(staged) == data
        assert not os.path.exists(target)
        outcome = ('image uploading again, staged data intact, the %.1f '
                   'MiB of %d written to the store removed'
                   % (written / 2.0 ** 20, SIZE >> 20))
        image, states = glance.import_and_wait(image_id)
        assert image['status'] == 'active', states
        outcome += '; imported again'
    assert image['checksum'] == md5(data)
    assert glance.download(image_id).content == data
    # Deleted, it leaves nothing behind.
    assert glance.delete(image_id).status_code == 204
    assert glance.request('GET', '/v2/images/' + image_id).status_code \
        == 404
    assert settled(lambda: staging_files(api.layout), []) == []
    assert not os.path.exists(target)
    figures.append('SIGKILL during a 256 MiB glance-direct import: %s; '
                   'deleted, staging empty' % outcome)
