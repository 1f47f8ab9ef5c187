"""SIGHUP: glance-api with a worker takes its stores from its file again.

A glance-api of this module's own, configured as the demo's but with one
worker (the parent process reloads; the worker serves), is sent SIGHUP
after its glance-api.conf was edited.  What an operator and a user see:
stores-info, imports into the stores, the worker's pid, the log and the
output of glance-api, the files in the datadirs.
"""

import os
import signal
import time
import uuid

import pytest

import glance_demo
import glance_http
from glance_http import message
from glance_http import settled

STAGING = glance_demo.STAGING_STORE
TIMEOUT = 60
NOT_RELOADING = ('Not reloading: the stores cannot start with the '
                 'configuration as it is now')


class ReloadingApi(object):
    """A glance-api with one worker, its configuration, and SIGHUP."""

    def __init__(self, python, tree, base):
        self.layout = glance_demo.Layout(base)
        self.sections = glance_demo.config_sections(
            self.layout, glance_demo.free_port())
        self.sections['DEFAULT']['workers'] = '1'
        glance_demo.write_config(self.layout, self.sections, tree)
        glance_demo.db_sync(python, self.layout)
        self.server = glance_demo.GlanceApi(
            python, self.layout, int(self.sections['DEFAULT']['bind_port']))
        self.glance = glance_http.Glance(self.server.url)

    def start(self):
        self.server.start()
        self.wait_for_worker(set())

    def stop(self):
        self.server.stop()

    def add_store(self, name):
        path = os.path.join(self.layout.base, 'stores', name)
        self.sections['DEFAULT']['enabled_backends'] += ', %s:file' % name
        self.sections[name] = {'filesystem_store_datadir': path}
        return path

    def remove_store(self, name):
        backends = [b.strip() for b in
                    self.sections['DEFAULT']['enabled_backends'].split(',')]
        self.sections['DEFAULT']['enabled_backends'] = ', '.join(
            b for b in backends if b != '%s:file' % name)

    def write(self):
        """Write glance-api.conf as the sections now are, nothing else."""
        with open(self.layout.conf, 'w') as f:
            f.write(glance_demo.render_config(self.sections))

    def workers(self):
        """The pids of glance-api's worker processes."""
        parent = str(self.server.proc.pid)
        found = set()
        for entry in os.listdir('/proc'):
            if not entry.isdigit():
                continue
            try:
                with open('/proc/%s/stat' % entry) as f:
                    stat = f.read()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may hold spaces.
            fields = stat.rsplit(')', 1)[1].split()
            if fields[1] == parent and fields[0] != 'Z':
                found.add(int(entry))
        return found

    def wait_for_worker(self, old):
        """Wait until one worker, none of old, serves; return its pid."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            workers = self.workers()
            if len(workers) == 1 and not workers & old and \
                    self.server.healthy():
                return workers.pop()
            time.sleep(0.1)
        raise AssertionError('no new worker within %d s; log:\n%s' % (
            TIMEOUT, glance_demo.tail(self.layout.log)))

    def sighup(self):
        os.kill(self.server.proc.pid, signal.SIGHUP)

    def reload(self):
        """Write the configuration, SIGHUP, wait for the new worker."""
        old = self.workers()
        self.write()
        self.sighup()
        return self.wait_for_worker(old)

    def log(self):
        with open(self.layout.log, errors='replace') as f:
            return f.read()

    def output(self):
        with open(self.layout.output, errors='replace') as f:
            return f.read()

    def wait_for_log(self, text, count=1):
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.log().count(text) >= count:
                return
            time.sleep(0.1)
        raise AssertionError('the log never said %r; it ends:\n%s' % (
            text, glance_demo.tail(self.layout.log)))

    def stores(self):
        resp = self.glance.request('GET', '/v2/info/stores')
        assert resp.status_code == 200, resp.text
        return sorted(s['id'] for s in resp.json()['stores'])

    def stage_and_import(self, store, size=1 << 20):
        """glance-direct import of size random bytes into store."""
        image = self.glance.create_image('reload')
        data = os.urandom(size)
        resp = self.glance.stage(image['id'], data)
        assert resp.status_code == 204, resp.text
        image, seen = self.glance.import_and_wait(image['id'], store=store)
        assert image['status'] == 'active', seen
        assert image['stores'] == store
        resp = self.glance.download(image['id'])
        assert resp.status_code == 200
        assert resp.content == data
        return image['id']


@pytest.fixture
def reloading(glance_python, glance_tree, tmpdir):
    api = ReloadingApi(glance_python, glance_tree, str(tmpdir.join('api')))
    api.start()
    yield api
    api.stop()


def staging_files(api):
    return glance_demo.list_files(api.layout.datadirs[STAGING])


def staging_empties(api, timeout=10):
    """Wait for the staging store to be empty; tell whether it is.

    The import's last step removes the staged data just after the image
    turned active.
    """
    deadline = time.monotonic() + timeout
    while staging_files(api) and time.monotonic() < deadline:
        time.sleep(0.1)
    return staging_files(api) == []


def test_added_store_is_served_after_sighup(reloading):
    assert reloading.stores() == ['cheap', 'fast']
    extra = reloading.add_store('extra')
    reloading.reload()

    assert reloading.stores() == ['cheap', 'extra', 'fast']
    image_id = reloading.stage_and_import('extra')
    assert glance_demo.list_files(extra) == [image_id]
    # Staged through the reserved staging store, injected again, and
    # emptied by the import.
    assert staging_empties(reloading)
    assert STAGING not in reloading.stores()


def test_removed_store_is_refused_after_sighup(reloading):
    reloading.remove_store('cheap')
    reloading.reload()

    assert reloading.stores() == ['fast']
    image = reloading.glance.create_image('removed')
    resp = reloading.glance.stage(image['id'], b'x' * 4096)
    assert resp.status_code == 204, resp.text
    resp = reloading.glance.import_image(image['id'], store='cheap')
    assert resp.status_code == 409
    assert 'Store for scheme cheap not found' in message(resp)
    # What was staged stays, for an import into a store that exists.
    assert staging_files(reloading) == [image['id']]
    reloading.stage_and_import('fast')


def test_reserved_section_is_read_again(reloading):
    moved = os.path.join(reloading.layout.base, 'staging-moved')
    reloading.sections[STAGING]['filesystem_store_datadir'] = moved
    reloading.reload()

    image = reloading.glance.create_image('moved')
    resp = reloading.glance.stage(image['id'], b'y' * 4096)
    assert resp.status_code == 204, resp.text
    assert glance_demo.list_files(moved) == [image['id']]
    assert staging_files(reloading) == []


@pytest.mark.parametrize('break_it, text', [
    (lambda api: api.add_store('os_glance_mine'),
     "Invalid store name 'os_glance_mine' in the enabled_backends option "
     "of glance-api.conf: names starting with 'os_glance_' are reserved "
     "for Glance's own stores."),
    (lambda api: api.sections['glance_store'].update(
        default_backend=STAGING),
     "Invalid value 'os_glance_staging_store' for "
     "[glance_store]/default_backend in glance-api.conf"),
    (lambda api: api.sections[glance_demo.TASKS_STORE].update(
        filesystem_store_datadir='relative-tasks'),
     "Invalid value 'relative-tasks' for "
     "[os_glance_tasks_store]/filesystem_store_datadir in glance-api.conf: "
     "the path is relative"),
], ids=['reserved-name', 'reserved-default', 'relative-tasks-datadir'])
def test_bad_configuration_is_refused_and_the_old_one_serves(
        reloading, break_it, text):
    worker = reloading.workers()
    break_it(reloading)
    reloading.write()
    reloading.sighup()

    reloading.wait_for_log(NOT_RELOADING)
    # The same message a start with that file gives (test_startup.py).
    assert 'ERROR: ' + text in reloading.output()
    assert text in reloading.log()
    # The running configuration serves on, in the same worker.
    assert reloading.workers() == worker
    assert reloading.stores() == ['cheap', 'fast']
    reloading.stage_and_import('cheap')
    assert not os.path.exists(os.path.join(reloading.layout.base, 'stores',
                                           'os_glance_mine'))


def test_corrected_configuration_is_taken_at_the_next_sighup(reloading):
    reloading.add_store('os_glance_mine')
    reloading.write()
    reloading.sighup()
    reloading.wait_for_log(NOT_RELOADING)

    del reloading.sections['os_glance_mine']
    reloading.remove_store('os_glance_mine')
    reloading.add_store('extra')
    reloading.reload()
    assert reloading.stores() == ['cheap', 'extra', 'fast']
    reloading.stage_and_import('extra')


def test_sighup_does_not_clean_up(reloading):
    # Staged data of an image that does not exist, as a glance-api killed
    # during an import leaves it behind.
    name = str(uuid.uuid4())
    orphan = os.path.join(reloading.layout.datadirs[STAGING], name)
    with open(orphan, 'wb') as f:
        f.write(b'orphaned')
    reloading.reload()
    assert staging_files(reloading) == [name]

    # The control: a start removes it, in the background once it serves.
    reloading.stop()
    reloading.start()
    assert settled(lambda: staging_files(reloading), []) == []
    assert 'Removed %s from %s' % (orphan, STAGING) in reloading.log()
