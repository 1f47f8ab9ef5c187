"""The upgrade: data staged before the reserved stores had directories.

A glance-api of this module's own first runs as a Stein deployment with
multiple stores was configured: ``node_staging_uri`` and
``[task]/work_dir`` set, no section for the reserved stores, so that it
stages where Glance 18.0.1 staged (``<node_staging_uri>/<image id>``).
Clients stage images.  The operator then does what the start-up warning
and the docs say: adds the two sections with directories of their own,
removes work_dir, keeps node_staging_uri for now, and restarts
glance-api.  Then:

* the images staged before are still ``uploading`` and their
  glance-direct import makes them active with the data the client staged;
  the data left the old directory, once, and the staging store is empty;
* deleting such an image removes its data from the old directory;
* nothing else in the old directory is touched, not even a link named
  after an image being imported: that import fails without reading
  through the link;
* ``glance-status upgrade check`` reports the data waiting in the old
  directory while there is some, and what to do, and no longer once it
  is imported.
"""

import copy
import os
import subprocess
import threading

import pytest

import glance_demo
from glance_http import Glance
from glance_http import md5
from glance_http import settled

STAGING = glance_demo.STAGING_STORE
TASKS = glance_demo.TASKS_STORE
SIZE = 64 << 20
# Images a client imports at once after the upgrade.
CONCURRENT = 4


class Upgraded(object):
    """A glance-api staged into as 18.0.1 did, then upgraded."""

    def __init__(self, python, tree, base):
        self.python = python
        self.tree = tree
        self.layout = glance_demo.Layout(base)
        self.port = glance_demo.free_port()
        self.upgraded = glance_demo.config_sections(self.layout, self.port)
        self.old_staging = os.path.join(self.layout.base, 'old-staging')
        self.old_work_dir = os.path.join(self.layout.base, 'old-work-dir')
        # As the docs say: node_staging_uri stays until the data staged
        # before the upgrade is imported; work_dir goes.
        self.upgraded['DEFAULT']['node_staging_uri'] = \
            'file://' + self.old_staging
        self.before = copy.deepcopy(self.upgraded)
        self.before['task'] = {'work_dir': self.old_work_dir}
        del self.before[STAGING]
        del self.before[TASKS]
        self.server = None
        self.staged = {}        # image id: the data staged before
        self.foreign = {}       # name in the old directory: its content

    def write(self, sections):
        with open(self.layout.conf, 'w') as f:
            f.write(glance_demo.render_config(sections))

    def start(self):
        self.server = glance_demo.GlanceApi(self.python, self.layout,
                                            self.port)
        self.server.start()
        return Glance(self.server.url)

    def stop(self):
        if self.server is not None:
            self.server.stop()
            self.server = None

    def log(self):
        with open(self.layout.log, errors='replace') as f:
            return f.read()

    def glance_status(self):
        """Run glance-status upgrade check; return (exit code, output)."""
        proc = subprocess.run(
            [os.path.join(os.path.dirname(self.python), 'glance-status'),
             '--config-file', self.layout.conf, 'upgrade', 'check'],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            universal_newlines=True, timeout=120, cwd=self.layout.base)
        return proc.returncode, proc.stdout

    def old_files(self):
        return sorted(os.listdir(self.old_staging))


@pytest.fixture(scope='module')
def upgraded(tmpdir_factory, glance_python, glance_tree):
    api = Upgraded(glance_python, glance_tree,
                   str(tmpdir_factory.mktemp('upgrade')))
    glance_demo.write_config(api.layout, api.before, glance_tree)
    glance_demo.db_sync(glance_python, api.layout)
    try:
        # Before the upgrade.
        glance = api.start()
        names = ['imported-%d' % i for i in range(CONCURRENT)]
        names += ['deleted', 'replaced-by-a-link']
        for name in names:
            image_id = glance.create_image(name)['id']
            data = os.urandom(SIZE if name == 'imported-0' else 1 << 20)
            resp = glance.stage(image_id, data)
            assert resp.status_code == 204, resp.text
            api.staged[name] = (image_id, data)
        api.stop()
        assert api.old_files() == sorted(i for i, _d in api.staged.values())

        # What else an operator may keep there: a file, a file named
        # after an image that does not exist, and, in place of the data of
        # an image being imported, a link to a file that is not Glance's.
        secret = os.path.join(api.layout.base, 'secret.txt')
        with open(secret, 'wb') as f:
            f.write(b'not image data')
        link_id = api.staged['replaced-by-a-link'][0]
        os.unlink(os.path.join(api.old_staging, link_id))
        os.symlink(secret, os.path.join(api.old_staging, link_id))
        api.foreign = {'notes.txt': b'the operator\'s notes',
                       '00000000-0000-4000-8000-000000000000': b'no image'}
        for name, content in api.foreign.items():
            with open(os.path.join(api.old_staging, name), 'wb') as f:
                f.write(content)

        # The upgrade: the reserved stores get directories of their own.
        api.write(api.upgraded)
        api.start()
        yield api
    finally:
        api.stop()


def test_images_staged_before_are_still_uploading(upgraded):
    glance = Glance(upgraded.server.url)
    for name, (image_id, _data) in sorted(upgraded.staged.items()):
        assert glance.status(image_id) == 'uploading', name
    assert glance_demo.list_files(upgraded.layout.datadirs[STAGING]) == []


def test_glance_status_reports_the_data_waiting(upgraded):
    code, out = upgraded.glance_status()
    assert code == 1, out
    text = ' '.join(line.strip('| ') for line in out.splitlines())
    assert 'Check: Data staged before the upgrade' in out
    # The images staged before, and the file named after no image; not
    # the notes nor the link.
    assert ('%d image(s) have data staged before the upgrade in %s'
            % (CONCURRENT + 2, upgraded.old_staging)) in text
    assert 'Keep node_staging_uri' in text


def test_staged_data_is_imported_after_the_upgrade(upgraded, figures):
    glance = Glance(upgraded.server.url)
    names = ['imported-%d' % i for i in range(CONCURRENT)]
    results = {}

    def run(name):
        image_id = upgraded.staged[name][0]
        results[name] = Glance(upgraded.server.url).import_and_wait(
            image_id, store='cheap')

    threads = [threading.Thread(target=run, args=(name,), daemon=True)
               for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    for name in names:
        image_id, data = upgraded.staged[name]
        image, states = results[name]
        assert image['status'] == 'active', (name, states)
        assert image['checksum'] == md5(data), name
        assert image['stores'] == 'cheap', name
        assert glance.download(image_id).content == data, name
        assert image_id not in upgraded.old_files(), name
        assert ('Moved %s, the data image %s staged before the upgrade, '
                'into the staging store'
                % (os.path.join(upgraded.old_staging, image_id), image_id)
                ) in upgraded.log(), name
    assert settled(lambda: glance_demo.list_files(
        upgraded.layout.datadirs[STAGING]), []) == []
    figures.append('upgrade: %d images staged before it (one of %d MiB) '
                   'imported at once after it, data moved out of '
                   'node_staging_uri' % (CONCURRENT, SIZE >> 20))


def test_deleting_removes_data_staged_before(upgraded):
    glance = Glance(upgraded.server.url)
    image_id = upgraded.staged['deleted'][0]
    assert image_id in upgraded.old_files()
    assert glance.delete(image_id).status_code == 204
    assert image_id not in upgraded.old_files()
    assert glance.request('GET', '/v2/images/' + image_id).status_code \
        == 404


def test_a_link_in_the_old_directory_is_never_followed(upgraded):
    glance = Glance(upgraded.server.url)
    image_id = upgraded.staged['replaced-by-a-link'][0]
    link = os.path.join(upgraded.old_staging, image_id)
    image, states = glance.import_and_wait(image_id)
    # Nothing was staged that the import could use.
    assert image['status'] == 'queued', states
    assert os.path.islink(link)
    with open(os.path.join(upgraded.layout.base, 'secret.txt'), 'rb') as f:
        assert f.read() == b'not image data'
    for store in glance_demo.OPERATOR_STORES + (STAGING,):
        assert image_id not in glance_demo.list_files(
            upgraded.layout.datadirs[store]), store
    assert 'Not moving %s into the staging store: it is not a regular ' \
        'file' % link in upgraded.log()


def test_other_files_are_left_alone(upgraded):
    image_id = upgraded.staged['replaced-by-a-link'][0]
    # Whatever ran before, only Glance's staged data left.
    assert upgraded.old_files() == sorted(list(upgraded.foreign) +
                                          [image_id])
    for name, content in upgraded.foreign.items():
        with open(os.path.join(upgraded.old_staging, name), 'rb') as f:
            assert f.read() == content, name


def test_glance_status_once_the_data_is_imported(upgraded):
    # The operator removes what is not an image's and the link.
    os.unlink(os.path.join(upgraded.old_staging,
                           '00000000-0000-4000-8000-000000000000'))
    os.unlink(os.path.join(upgraded.old_staging,
                           upgraded.staged['replaced-by-a-link'][0]))
    code, out = upgraded.glance_status()
    rows = out.split('Check: ')
    row = [r for r in rows if r.startswith('Data staged before the upgrade')]
    assert row and 'Result: Success' in row[0], out
    assert 'notes.txt' in upgraded.old_files()
