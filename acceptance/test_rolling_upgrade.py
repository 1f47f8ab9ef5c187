"""A rolling upgrade: Glance 18.0.1 and the series on one database.

Mid-upgrade, a node still running Glance 18.0.1 as released and a node
already running the series serve the same users from the same database
and the same storage.  Two glance-api processes on 127.0.0.1 share:

* one SQLite database, made by 18.0.1's ``glance-manage db_sync``;
* the directories of the operator's file stores ``fast`` (the default)
  and ``cheap``;
* the staging directory: 18.0.1's ``node_staging_uri`` is the patched
  node's ``[os_glance_staging_store]/filesystem_store_datadir``; and the
  tasks directory: 18.0.1's ``[task]/work_dir`` is the patched node's
  ``[os_glance_tasks_store]/filesystem_store_datadir``.

Each node has the configuration an operator has at that point: the
18.0.1 node ``enabled_backends`` with ``node_staging_uri`` and
``[task]/work_dir``, and the property protection file the admin guide
gives it for the upgrade (``os_glance_`` properties closed to every API
user), the patched node the sections of both reserved stores and no
``worker_self_reference_url``.  The tests prove that:

* each node lists, shows, downloads and deletes the images the other
  one made by upload, by glance-direct import or by web-download;
* what the 18.0.1 node shows of the patched node's images (the images
  and the import tasks) is what it shows of its own images made the
  same way: no new key, no new value, no reserved store;
* the rows the patched node writes (images, image_properties,
  image_locations, tasks and task_info, read from the SQLite file) are
  those 18.0.1 writes for the same requests;
* data staged on one node is imported, or deleted, by the other, in
  both directions, and the staging directory is left empty;
* the 18.0.1 node logs no error and no traceback meanwhile;
* with its protection file, the 18.0.1 node treats every other property
  as before; through either node no API user, not even an admin, creates
  or adds an ``os_glance_`` property, nor changes or removes one (403
  from the patched node; 18.0.1 shows the rule's properties to no one,
  so it answers a change or removal 409, "does not exist"), and no image
  the patched node makes shows one;
* a forged ``os_glance_stage_host`` (as an API user could have set one
  on 18.0.1 before the rule was in place) never makes either node send a
  request to the URL it names, through stage, import and delete, and
  neither node shows it;
* an import that fails on either node loses nothing: on the patched
  node the image is handed back 'uploading' and the 18.0.1 node imports
  it; on the 18.0.1 node it stays 'importing', as 18.0.1 leaves it, with
  its data staged until the patched node deletes it;
* an image deleted on one node while the other stages its data leaves
  no data staged;
* the patched node, restarted, keeps what the 18.0.1 node staged; and
  the 18.0.1 node, restarted with the series and its glance-api.conf
  unchanged, imports what it had staged before.

The cluster is module-scoped: the tests run in the order of this file,
and the last one upgrades the 18.0.1 node.  SQLite lets one process
write at a time and fails a write that would wait on another process
("database is locked"), which MariaDB and PostgreSQL do not: after an
import, the tests wait for its task to end before the other node
writes.
"""

import contextlib
import datetime
import json
import os
import sqlite3
import threading
import time
import uuid

import pytest
import requests

import glance_demo
from glance_http import Glance
from glance_http import md5
from glance_http import message

OLD = '18.0.1'
NEW = 'patched'
NODES = (OLD, NEW)
OTHER = {OLD: NEW, NEW: OLD}
STAGING = glance_demo.STAGING_STORE
TASKS = glance_demo.TASKS_STORE
DEFAULT = glance_demo.DEFAULT_STORE

ADMIN_HEADERS = dict(glance_demo.IDENTITY_HEADERS, **{'X-Roles': 'admin'})

# The property protection file of the 18.0.1 node.  Its first section is
# the rule the admin guide gives 18.0.1 nodes for the upgrade ("Several
# glance-api nodes", "A rolling upgrade from 18.0.1"), as it shows it.
# The catch-all section after it is needed: once 18.0.1 reads a
# protection file, a property that no section matches is refused to
# everyone for every operation (PropertyRules.check_property_rules
# answers False when no rule matches), so without it no API user could
# create, read, change or remove any property of their own on that node
# any more.  "@" for every operation keeps all other properties as
# 18.0.1 treats them without a protection file.
PROTECTION_RULES = """\
[^os_glance_.*]
create = !
read = !
update = !
delete = !

[.*]
create = @
read = @
update = @
delete = @
"""
PROTECTION_FILE = 'property-protections.conf'

# The patched node's record of the node holding an image's staged data.
STAGE_HOST = 'os_glance_stage_host'
PATCH_TYPE = 'application/openstack-images-v2.1-json-patch'


def data_of(size):
    """Random bytes: no two images share a checksum."""
    return os.urandom(size)


def files(path):
    return glance_demo.list_files(path)


def staged_files(cluster, image_id):
    """The files of an image in the shared staging directory."""
    return [name for name in files(cluster.staging)
            if name.startswith(image_id)]


def read(path):
    with open(path, 'rb') as f:
        return f.read()


class Cluster(object):
    """Two glance-api nodes, 18.0.1 and patched, sharing their state."""

    def __init__(self, base, old_python, old_tree, new_python, new_tree,
                 web_port):
        self.shared = os.path.join(base, 'shared')
        self.db = os.path.join(self.shared, 'glance.sqlite')
        self.stores = dict(
            (name, os.path.join(self.shared, 'stores', name))
            for name in glance_demo.OPERATOR_STORES)
        self.staging = os.path.join(self.shared, 'staging')
        self.work_dir = os.path.join(self.shared, 'tasks')
        for path in [self.staging, self.work_dir] + list(
                self.stores.values()):
            os.makedirs(path)
        self.layouts = {}
        self.sections = {}
        for node, python, tree in ((OLD, old_python, old_tree),
                                   (NEW, new_python, new_tree)):
            layout = glance_demo.Layout(os.path.join(base, 'node-' + node))
            layout.db = self.db
            for name, path in self.stores.items():
                layout.datadirs[name] = path
            if node == OLD:
                # 18.0.1 knows no reserved store.
                del layout.datadirs[STAGING]
                del layout.datadirs[TASKS]
            else:
                layout.datadirs[STAGING] = self.staging
                layout.datadirs[TASKS] = self.work_dir
            sections = glance_demo.config_sections(
                layout, glance_demo.free_port(), web_port)
            if node == OLD:
                sections['DEFAULT']['node_staging_uri'] = \
                    'file://' + self.staging
                sections['DEFAULT']['property_protection_file'] = \
                    os.path.join(layout.etc, PROTECTION_FILE)
                sections['DEFAULT']['property_protection_rule_format'] = \
                    'roles'
                sections['task'] = {'work_dir': self.work_dir}
            glance_demo.write_config(layout, sections, tree)
            if node == OLD:
                with open(os.path.join(layout.etc, PROTECTION_FILE),
                          'w') as f:
                    f.write(PROTECTION_RULES)
            self.layouts[node] = layout
            self.sections[node] = sections
        # The database is the one the deployment had before the upgrade.
        glance_demo.db_sync(old_python, self.layouts[OLD])
        self.apis = {}
        for node, python in ((OLD, old_python), (NEW, new_python)):
            port = int(self.sections[node]['DEFAULT']['bind_port'])
            self.apis[node] = glance_demo.GlanceApi(python,
                                                    self.layouts[node], port)

    def start(self):
        started = time.monotonic()
        for node in NODES:
            self.apis[node].start()
        return time.monotonic() - started

    def stop(self):
        return dict((node, api.stop()) for node, api in self.apis.items())

    def client(self, node):
        return Glance(self.apis[node].url)

    def admin(self, node):
        glance = Glance(self.apis[node].url)
        glance.session.headers.update(ADMIN_HEADERS)
        return glance

    def store_holding(self, image_id):
        """The operator stores with a file of the image."""
        return sorted(name for name, path in self.stores.items()
                      if os.path.exists(os.path.join(path, image_id)))

    def log(self, node):
        with open(self.layouts[node].log, errors='replace') as f:
            return f.read()


@pytest.fixture(scope='module')
def cluster(tmpdir_factory, unpatched_python, unpatched_tree,
            glance_python, glance_tree, file_server, figures):
    started = time.monotonic()
    nodes = Cluster(str(tmpdir_factory.mktemp('rolling')),
                    unpatched_python, unpatched_tree, glance_python,
                    glance_tree, file_server.port)
    try:
        nodes.start()
        figures.append('rolling upgrade: database made and both nodes '
                       'started in %.1f s' % (time.monotonic() - started))
        yield nodes
    finally:
        nodes.stop()


def web_file(file_server, data):
    name = 'rolling-%s.raw' % uuid.uuid4().hex
    with open(os.path.join(file_server.directory, name), 'wb') as f:
        f.write(data)
    return file_server.url(name)


# How each node makes the images the tests use, with the store named.
METHODS = {
    'upload': ('upload', None),
    'upload-cheap': ('upload', 'cheap'),
    'glance-direct': ('glance-direct', None),
    'glance-direct-cheap': ('glance-direct', 'cheap'),
    'web-download-cheap': ('web-download', 'cheap'),
}


def wait_for_tasks(admin, timeout=60):
    """Wait until no task is pending or processing any more.

    An imported image is active before its task records its success.
    """
    deadline = time.monotonic() + timeout
    while True:
        busy = []
        for status in ('pending', 'processing'):
            resp = admin.request('GET', '/v2/tasks?status=' + status)
            assert resp.status_code == 200, resp.text
            busy += resp.json()['tasks']
        if not busy:
            return
        if time.monotonic() > deadline:
            raise AssertionError('tasks still running after %d s: %s'
                                 % (timeout, busy))
        time.sleep(0.1)


def make_image(cluster, node, how, store, data, file_server, name,
               uri=None):
    """Create an image on a node and give it its data; return its id.

    web-download takes the data from uri, or from a new file of the
    file server.  An import is waited for until its task has ended.
    """
    glance = cluster.client(node)
    image_id = glance.create_image(name)['id']
    if how == 'upload':
        resp = glance.upload(image_id, data, store=store)
        assert resp.status_code == 204, resp.text
    elif how == 'glance-direct':
        resp = glance.stage(image_id, data)
        assert resp.status_code == 204, resp.text
        image, seen = glance.import_and_wait(image_id, store=store)
        assert image['status'] == 'active', seen
    elif how == 'web-download':
        image, seen = glance.import_and_wait(
            image_id, method='web-download',
            uri=uri or web_file(file_server, data), store=store)
        assert image['status'] == 'active', seen
    elif how == 'stage':
        resp = glance.stage(image_id, data)
        assert resp.status_code == 204, resp.text
    elif how != 'create':
        raise ValueError(how)
    if how in ('glance-direct', 'web-download'):
        wait_for_tasks(cluster.admin(node))
    return image_id


def listed_ids(glance):
    resp = glance.request('GET', '/v2/images?limit=1000')
    assert resp.status_code == 200, resp.text
    return [image['id'] for image in resp.json()['images']]


# ------------------------------------------- each node serves the other's

@pytest.mark.parametrize('method', sorted(METHODS))
@pytest.mark.parametrize('maker', NODES)
def test_each_node_serves_what_the_other_made(cluster, file_server, maker,
                                              method):
    how, store = METHODS[method]
    viewer = OTHER[maker]
    mine, other = cluster.client(maker), cluster.client(viewer)
    data = data_of((2 << 20) + 321)
    image_id = make_image(cluster, maker, how, store, data, file_server,
                          'made-on-%s' % maker)
    store = store or DEFAULT
    assert cluster.store_holding(image_id) == [store]
    assert read(os.path.join(cluster.stores[store], image_id)) == data
    assert staged_files(cluster, image_id) == []

    assert image_id in listed_ids(other)
    image = other.image(image_id)
    assert image['status'] == 'active'
    assert image['size'] == len(data)
    assert image['checksum'] == md5(data)
    assert image['stores'] == store
    resp = other.download(image_id)
    assert resp.status_code == 200, resp.text
    assert resp.content == data
    assert md5(resp.content) == image['checksum']
    assert resp.headers['Content-MD5'] == md5(data)

    resp = other.delete(image_id)
    assert resp.status_code == 204, resp.text
    for glance in (mine, other):
        resp = glance.request('GET', '/v2/images/' + image_id)
        assert resp.status_code == 404, resp.text
        assert image_id not in listed_ids(glance)
    assert cluster.store_holding(image_id) == []


# ------------------------------- staged on one node, imported on the other

@pytest.mark.parametrize('store', [None, 'cheap'])
@pytest.mark.parametrize('stager', NODES)
def test_staged_on_one_node_imported_on_the_other(cluster, stager, store,
                                                  figures):
    importer = OTHER[stager]
    staging_node, import_node = cluster.client(stager), \
        cluster.client(importer)
    data = data_of((3 << 20) + 5)
    image_id = staging_node.create_image('staged-on-%s' % stager)['id']
    resp = staging_node.stage(image_id, data)
    assert resp.status_code == 204, resp.text
    # Both nodes see the image staged, and the data in the shared
    # directory under the image id, as 18.0.1 keeps it.
    for glance in (staging_node, import_node):
        assert glance.status(image_id) == 'uploading'
    assert staged_files(cluster, image_id) == [image_id]
    assert read(os.path.join(cluster.staging, image_id)) == data

    started = time.monotonic()
    image, seen = import_node.import_and_wait(image_id, store=store)
    took = time.monotonic() - started
    assert image['status'] == 'active', seen
    # The image is active before the import removes the staged data.
    wait_for_tasks(cluster.admin(importer))
    store = store or DEFAULT
    assert image['stores'] == store
    assert image['checksum'] == md5(data)
    assert cluster.store_holding(image_id) == [store]
    assert staged_files(cluster, image_id) == []
    for glance in (staging_node, import_node):
        assert glance.download(image_id).content == data
    figures.append('rolling upgrade: staged on %s, imported on %s into %s: '
                   'active in %.1f s, staging directory empty' % (
                       stager, importer, store, took))
    assert staging_node.delete(image_id).status_code == 204
    assert cluster.store_holding(image_id) == []


@pytest.mark.parametrize('stager', NODES)
def test_staged_on_one_node_deleted_on_the_other(cluster, stager):
    staging_node, deleting_node = cluster.client(stager), \
        cluster.client(OTHER[stager])
    image_id = staging_node.create_image('staged-on-%s' % stager)['id']
    resp = staging_node.stage(image_id, data_of(1 << 20))
    assert resp.status_code == 204, resp.text
    assert staged_files(cluster, image_id) == [image_id]
    resp = deleting_node.delete(image_id)
    assert resp.status_code == 204, resp.text
    assert staged_files(cluster, image_id) == []
    resp = staging_node.request('GET', '/v2/images/' + image_id)
    assert resp.status_code == 404, resp.text


# ------------------------- the same requests on both nodes, then compared

# What is done to make each pair of images: one on each node.
SCENARIOS = {
    'created': ('create', None),
    'staged': ('stage', None),
    'upload': ('upload', None),
    'upload-cheap': ('upload', 'cheap'),
    'glance-direct': ('glance-direct', None),
    'glance-direct-cheap': ('glance-direct', 'cheap'),
    'web-download': ('web-download', None),
    'web-download-cheap': ('web-download', 'cheap'),
    'upload-deleted': ('upload', None),
    'glance-direct-deleted': ('glance-direct', None),
    'staged-deleted': ('stage', None),
}


@pytest.fixture(scope='module')
def pairs(cluster, file_server):
    """{scenario: {node: image id}}: the same requests made on each node.

    The images stay (those of the '-deleted' scenarios are deleted by the
    node that made them) so that their representations and rows can be
    compared; the cluster's directories go with the test run.
    """
    made = {}
    for scenario in sorted(SCENARIOS):
        how, store = SCENARIOS[scenario]
        made[scenario] = {}
        # The same data, from the same URL for web-download: the task
        # records the URL.
        data = data_of(1 << 20)
        uri = web_file(file_server, data)
        for node in NODES:
            glance = cluster.client(node)
            image_id = make_image(cluster, node, how, store, data,
                                  file_server, 'pair', uri=uri)
            if scenario.endswith('-deleted'):
                assert glance.delete(image_id).status_code == 204
            made[scenario][node] = image_id
    return made


# What differs between two images made the same way.
VOLATILE_KEYS = frozenset(['id', 'checksum', 'os_hash_value', 'created_at',
                           'updated_at', 'expires_at', 'self', 'file'])


def masked(view, ids):
    """A representation with what differs between two images masked."""
    text = json.dumps(view, sort_keys=True)
    for value, mask in ids:
        text = text.replace(value, mask)
    result = json.loads(text)
    for key in VOLATILE_KEYS:
        if result.get(key) is not None:
            result[key] = '<%s>' % key
    return result


TASK_KEYS = ('id', 'input', 'type', 'status', 'owner', 'message', 'result',
             'created_at', 'updated_at', 'self', 'schema', 'expires_at')


def assert_nothing_reserved(text):
    assert 'os_glance' not in text
    assert STAGING not in text and TASKS not in text


def test_old_node_shows_nothing_new_of_the_new_nodes_images(cluster,
                                                            pairs):
    old = cluster.client(OLD)
    resp = old.request('GET', '/v2/images?limit=1000')
    assert resp.status_code == 200, resp.text
    listed = dict((image['id'], image) for image in resp.json()['images'])
    for scenario, ids in sorted(pairs.items()):
        if scenario.endswith('-deleted'):
            for image_id in ids.values():
                assert image_id not in listed
                resp = old.request('GET', '/v2/images/' + image_id)
                assert resp.status_code == 404, resp.text
            continue
        resp = old.request('GET', '/v2/images/' + ids[NEW])
        assert resp.status_code == 200, resp.text
        assert_nothing_reserved(resp.text)
        new_view = resp.json()
        old_view = old.image(ids[OLD])
        assert sorted(new_view) == sorted(old_view), scenario
        assert masked(new_view, [(ids[NEW], '<image>')]) == \
            masked(old_view, [(ids[OLD], '<image>')]), scenario
        assert listed[ids[NEW]] == new_view
        if 'stores' in new_view:
            assert new_view['stores'] in glance_demo.OPERATOR_STORES
        assert new_view['status'] == {
            'create': 'queued', 'stage': 'uploading'}.get(
                SCENARIOS[scenario][0], 'active'), scenario


def tasks_by_image(admin):
    """{image id: [task as shown]} of the import tasks a node shows."""
    resp = admin.request('GET', '/v2/tasks?limit=1000')
    assert resp.status_code == 200, resp.text
    found = {}
    for summary in resp.json()['tasks']:
        resp = admin.request('GET', '/v2/tasks/' + summary['id'])
        assert resp.status_code == 200, resp.text
        task = resp.json()
        image_id = (task.get('input') or {}).get('image_id')
        found.setdefault(image_id, []).append((task, resp.text))
    return found


def test_old_node_shows_nothing_new_of_the_new_nodes_tasks(cluster, pairs):
    tasks = tasks_by_image(cluster.admin(OLD))
    compared = 0
    for scenario, ids in sorted(pairs.items()):
        if SCENARIOS[scenario][0] not in ('glance-direct', 'web-download'):
            for image_id in ids.values():
                assert image_id not in tasks
            continue
        [(new_task, new_text)] = tasks[ids[NEW]]
        [(old_task, _text)] = tasks[ids[OLD]]
        assert_nothing_reserved(new_text)
        assert new_task['status'] == 'success', new_task
        assert masked(new_task, [(ids[NEW], '<image>'),
                                 (new_task['id'], '<task>')]) == \
            masked(old_task, [(ids[OLD], '<image>'),
                              (old_task['id'], '<task>')]), scenario
        compared += 1
    assert compared == len([s for s in SCENARIOS.values()
                            if s[0] in ("glance-direct", "web-download")])


# ----------------------------------------------------- the database rows

def query(cluster, sql, *args):
    """Rows of the shared database as dicts, read-only."""
    conn = sqlite3.connect('file:%s?mode=ro' % cluster.db, uri=True,
                           timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute(sql, args)]
    finally:
        conn.close()


IMAGE_VOLATILE = ('id', 'name', 'checksum', 'os_hash_value', 'created_at',
                  'updated_at', 'deleted_at')
CHILD_VOLATILE = ('id', 'image_id', 'created_at', 'updated_at',
                  'deleted_at')
TASK_VOLATILE = ('id', 'task_id', 'created_at', 'updated_at', 'deleted_at',
                 'expires_at')


def normalised(rows, volatile, ids):
    """The rows with volatile columns masked and ids replaced, sorted."""
    result = []
    for row in rows:
        row = dict(row)
        for key in volatile:
            if row.get(key) is not None:
                row[key] = '<set>'
        for key, value in row.items():
            if isinstance(value, str):
                for old, new in ids:
                    value = value.replace(old, new)
                row[key] = value
        result.append(row)
    return sorted(result, key=lambda row: json.dumps(row, sort_keys=True))


IMPORT_TASK = 'os_glance_import_task'


def live_or_not_the_import_record(rows):
    """The property rows but the patched node's record of an import.

    The patched node records the task importing an image while it runs
    and deletes the record (soft, as every property) once it ended; later
    releases keep the same fact under the same name.
    """
    return [row for row in rows
            if not (row['name'] == IMPORT_TASK and row['deleted'])]


def rows_of(cluster, image_id):
    """Every row the database holds about an image, by table."""
    tasks = [task for task in query(
        cluster, 'SELECT * FROM tasks JOIN task_info ON '
        'tasks.id = task_info.task_id')
        if image_id in (task['input'] or '')]
    ids = [(image_id, '<image>')] + [(task['id'], '<task>')
                                     for task in tasks]
    return {
        'images': normalised(query(
            cluster, 'SELECT * FROM images WHERE id = ?', image_id),
            IMAGE_VOLATILE, ids),
        'image_properties': normalised(live_or_not_the_import_record(
            query(cluster,
                  'SELECT * FROM image_properties WHERE image_id = ?',
                  image_id)), CHILD_VOLATILE, ids),
        'image_locations': normalised(query(
            cluster, 'SELECT * FROM image_locations WHERE image_id = ?',
            image_id), CHILD_VOLATILE, ids),
        'tasks': normalised(tasks, TASK_VOLATILE, ids),
    }


def test_new_node_writes_the_rows_18_0_1_writes(cluster, pairs):
    for scenario, ids in sorted(pairs.items()):
        new_rows = rows_of(cluster, ids[NEW])
        old_rows = rows_of(cluster, ids[OLD])
        how = SCENARIOS[scenario][0]
        # What there is to compare: an image row, a location once data
        # went to a store, a task per import.
        assert len(new_rows['images']) == 1, scenario
        assert len(new_rows['image_locations']) == (
            0 if how in ('create', 'stage') else 1), scenario
        assert len(new_rows['tasks']) == (
            1 if how in ('glance-direct', 'web-download') else 0), scenario
        assert new_rows == old_rows, scenario
        text = json.dumps(new_rows)
        assert_nothing_reserved(text)
        assert cluster.staging not in text
        assert cluster.work_dir not in text
        for location in new_rows['image_locations']:
            assert json.loads(location['meta_data'])['backend'] in \
                glance_demo.OPERATOR_STORES


def test_no_row_of_the_database_names_a_reserved_store(cluster, pairs):
    for table in ('images', 'image_properties', 'image_locations',
                  'image_members', 'image_tags', 'tasks', 'task_info'):
        rows = query(cluster, 'SELECT * FROM %s' % table)
        if table == 'image_properties':
            rows = live_or_not_the_import_record(rows)
        text = json.dumps(rows)
        assert_nothing_reserved(text)
        assert cluster.staging not in text, table
        assert cluster.work_dir not in text, table


def test_old_node_logged_no_error(cluster, pairs):
    log = cluster.log(OLD)
    bad = [line for line in log.splitlines()
           if ' ERROR ' in line or 'Traceback' in line]
    assert bad == []
    # And it still answers.
    assert cluster.apis[OLD].healthy()
    assert cluster.apis[OLD].proc.poll() is None


@contextlib.contextmanager
def replaced_by_a_file(path):
    """A store's directory replaced by a regular file, then put back."""
    aside = path + '.aside'
    os.rename(path, aside)
    try:
        with open(path, 'w') as f:
            f.write('not a directory\n')
        yield
    finally:
        os.unlink(path)
        os.rename(aside, path)


# --------------------------------------- an import that fails, then after

def stage_on(cluster, node, data):
    glance = cluster.client(node)
    image_id = glance.create_image('staged-on-%s' % node)['id']
    resp = glance.stage(image_id, data)
    assert resp.status_code == 204, resp.text
    return image_id


def fail_import_into_cheap(cluster, node, image_id):
    """Import into 'cheap' on a node while its directory is a file."""
    with replaced_by_a_file(cluster.stores['cheap']):
        time.sleep(1.1)     # updated_at has a resolution of one second
        glance = cluster.client(node)
        since = glance.image(image_id)['updated_at']
        resp = glance.import_image(image_id, store='cheap')
        assert resp.status_code == 202, resp.text
        deadline = time.monotonic() + 60
        while glance.image(image_id)['updated_at'] == since:
            assert time.monotonic() < deadline, 'the import never ended'
            time.sleep(0.1)
        wait_for_tasks(cluster.admin(node))
    [(task, text)] = tasks_by_image(cluster.admin(OLD))[image_id]
    return task, text


def test_import_failed_on_the_new_node_is_retried_on_the_old_node(cluster):
    data = data_of((1 << 20) + 11)
    image_id = stage_on(cluster, OLD, data)
    task, text = fail_import_into_cheap(cluster, NEW, image_id)

    # The series hands the image back, staged data kept: both nodes
    # show it 'uploading', a status 18.0.1 knows and can import from.
    for node in NODES:
        image = cluster.client(node).image(image_id)
        assert image['status'] == 'uploading', node
        assert image['size'] is None and image['checksum'] is None
        assert 'stores' not in image
    assert read(os.path.join(cluster.staging, image_id)) == data
    assert cluster.store_holding(image_id) == []
    # The task, as 18.0.1 shows it: its keys, and a message that names
    # the operator's store (new text: the series says which store
    # failed, where 18.0.1 says 'Task failed due to Internal Error').
    assert task['status'] == 'failure'
    assert sorted(task) == sorted(TASK_KEYS)
    assert task['message'] == ('Image %s could not be imported into store '
                               'cheap: Not a directory' % image_id)
    assert_nothing_reserved(text)

    image, seen = cluster.client(OLD).import_and_wait(image_id,
                                                      store='fast')
    assert image['status'] == 'active', seen
    wait_for_tasks(cluster.admin(OLD))
    assert image['checksum'] == md5(data)
    assert image['stores'] == 'fast'
    assert cluster.client(NEW).download(image_id).content == data
    assert staged_files(cluster, image_id) == []
    assert cluster.client(NEW).delete(image_id).status_code == 204
    assert cluster.store_holding(image_id) == []


def test_import_failed_on_the_old_node_loses_nothing(cluster):
    data = data_of((1 << 20) + 13)
    image_id = stage_on(cluster, NEW, data)
    task, text = fail_import_into_cheap(cluster, OLD, image_id)

    # 18.0.1 as released leaves the image 'importing' (neither node
    # imports it again), with the staged data kept.
    assert task['status'] == 'failure'
    assert task['message'] == 'Task failed due to Internal Error'
    for node in NODES:
        glance = cluster.client(node)
        assert glance.image(image_id)['status'] == 'importing', node
        resp = glance.import_image(image_id, store='fast')
        assert resp.status_code == 409, resp.text
    assert read(os.path.join(cluster.staging, image_id)) == data
    # The patched node deletes it, and its staged data.
    assert cluster.client(NEW).delete(image_id).status_code == 204
    assert staged_files(cluster, image_id) == []
    assert cluster.store_holding(image_id) == []


class Sender(object):
    """Streams data in 1 MiB chunks; pauses half-way until released."""

    def __init__(self, data):
        self.data = data
        self.paused = threading.Event()
        self.release = threading.Event()

    def __iter__(self):
        half = len(self.data) // 2
        for start in range(0, len(self.data), 1 << 20):
            if start >= half and not self.release.is_set():
                self.paused.set()
                self.release.wait(60)
            yield self.data[start:start + (1 << 20)]


@pytest.mark.parametrize('stager', NODES)
def test_deleted_on_one_node_while_the_other_stages(cluster, stager):
    """Deleting an image during its stage leaves no data behind.

    The series stages into '<image id>.part' and renames it once all the
    data is there; 18.0.1 deletes only '<image id>'.  18.0.1 staging
    answers 204 all the same (its data went to a file deleted under it);
    the series answers 404.
    """
    deleter = OTHER[stager]
    glance = cluster.client(stager)
    image_id = glance.create_image('deleted-while-staging')['id']
    sender = Sender(data_of(8 << 20))
    outcome = {}

    def stage():
        outcome['resp'] = glance.stage(image_id, iter(sender))

    thread = threading.Thread(target=stage, daemon=True)
    thread.start()
    try:
        assert sender.paused.wait(60), 'the client never sent half the data'
        deadline = time.monotonic() + 60
        while not staged_files(cluster, image_id):
            assert time.monotonic() < deadline, 'nothing staged'
            time.sleep(0.05)
        resp = cluster.client(deleter).delete(image_id)
        assert resp.status_code == 204, resp.text
    finally:
        sender.release.set()
        thread.join(60)
    resp = outcome['resp']
    if stager == OLD:
        assert resp.status_code == 204, resp.text
    else:
        assert resp.status_code == 404, resp.text
        assert 'No image found with ID %s' % image_id in message(resp)
    for node in NODES:
        resp = cluster.client(node).request('GET', '/v2/images/' + image_id)
        assert resp.status_code == 404, resp.text
    assert staged_files(cluster, image_id) == []


# --------------------------------------------- the os_glance_ properties

def patch(glance, image_id, changes):
    return glance.request('PATCH', '/v2/images/' + image_id,
                          data=json.dumps(changes),
                          headers={'Content-Type': PATCH_TYPE})


def reserved_keys(view):
    return sorted(key for key in view
                  if key.strip().lower().startswith('os_glance_'))


def properties_in_db(cluster, image_id, name):
    """[(value, deleted)] of a property of an image, read from the file."""
    return [(row['value'], row['deleted']) for row in query(
        cluster, 'SELECT value, deleted FROM image_properties WHERE '
        'image_id = ? AND name = ?', image_id, name)]


def test_old_node_keeps_other_properties_with_its_protection_file(cluster):
    """The protection file changes nothing for any other property."""
    for maker in NODES:
        glance = cluster.client(maker)
        resp = glance.request('POST', '/v2/images', json={
            'name': 'properties-on-%s' % maker, 'disk_format': 'raw',
            'container_format': 'bare', 'os_distro': 'debian',
            'custom_key': 'one', 'glance_like': 'os_glance_not_a_prefix'})
        assert resp.status_code == 201, (maker, resp.text)
        image_id = resp.json()['id']
        for editor in NODES:
            glance = cluster.client(editor)
            resp = patch(glance, image_id, [
                {'op': 'add', 'path': '/added_on_' + editor.replace(
                    '.', '_'), 'value': 'yes'},
                {'op': 'replace', 'path': '/custom_key', 'value': editor}])
            assert resp.status_code == 200, (maker, editor, message(resp))
        resp = patch(cluster.client(OLD), image_id,
                     [{'op': 'remove', 'path': '/os_distro'}])
        assert resp.status_code == 200, (maker, message(resp))
        for viewer in NODES:
            view = cluster.client(viewer).image(image_id)
            shown = dict((key, view.get(key)) for key in (
                'os_distro', 'custom_key', 'glance_like', 'added_on_18_0_1',
                'added_on_patched'))
            assert shown == {
                'os_distro': None, 'custom_key': NEW,
                'glance_like': 'os_glance_not_a_prefix',
                'added_on_18_0_1': 'yes', 'added_on_patched': 'yes'}, (
                    maker, viewer, view)
        resp = cluster.client(OLD).request(
            'GET', '/v2/images', params={'custom_key': NEW})
        assert resp.status_code == 200, resp.text
        assert [i['id'] for i in resp.json()['images']] == [image_id]
        assert cluster.client(maker).delete(image_id).status_code == 204


def assert_refused_on(node, resp, what):
    """The refusal of a write of an os_glance_ property by node."""
    text = message(resp)
    assert resp.status_code == 403, (node, what, resp.status_code, text)
    assert STAGE_HOST in text, (node, what, text)


def try_to_write(cluster, image_id, value):
    """Every way of writing the record through both nodes, as member and
    as admin; returns the refusals counted."""
    refused = 0
    for node in NODES:
        for glance in (cluster.client(node), cluster.admin(node)):
            resp = patch(glance, image_id, [
                {'op': 'add', 'path': '/' + STAGE_HOST, 'value': value}])
            assert_refused_on(node, resp, 'PATCH add')
            refused += 1
            for op in ('replace', 'remove'):
                change = {'op': op, 'path': '/' + STAGE_HOST}
                if op == 'replace':
                    change['value'] = value
                resp = patch(glance, image_id, [change])
                if node == NEW:
                    assert_refused_on(node, resp, 'PATCH ' + op)
                else:
                    # 18.0.1 shows the property to no one: to it, the
                    # property the change names does not exist.
                    assert resp.status_code == 409, (op, message(resp))
                    assert 'Property %s does not exist' % STAGE_HOST in \
                        message(resp), message(resp)
                refused += 1
    return refused


def test_no_api_user_writes_an_os_glance_property(cluster, listener,
                                                  figures):
    forged = listener.url
    refused = 0
    for node in NODES:
        for glance in (cluster.client(node), cluster.admin(node)):
            resp = glance.request('POST', '/v2/images', json={
                'name': 'forged-on-%s' % node, 'disk_format': 'raw',
                'container_format': 'bare', STAGE_HOST: forged})
            assert_refused_on(node, resp, 'create')
            refused += 1
    for node in NODES:
        assert [i for i in cluster.client(node).request(
            'GET', '/v2/images?limit=1000').json()['images']
            if i['name'].startswith('forged-on-')] == []
    image_ids = [stage_on(cluster, node, data_of(1 << 20))
                 for node in NODES]
    image_ids.append(cluster.client(NEW).create_image('queued')['id'])
    for image_id in image_ids:
        refused += try_to_write(cluster, image_id, forged)
        assert properties_in_db(cluster, image_id, STAGE_HOST) == []
    for image_id in image_ids:
        assert cluster.client(OLD).delete(image_id).status_code == 204
    assert listener.received() == (0, [])
    figures.append('rolling upgrade: %d writes of %s through both nodes '
                   '(member and admin) refused, 403 (18.0.1 answers a '
                   'change or removal 409), none written' % (
                       refused, STAGE_HOST))


def test_the_new_nodes_images_show_no_os_glance_property(cluster,
                                                         file_server):
    made = []
    for how in ('create', 'stage', 'upload', 'glance-direct',
                'web-download'):
        made.append(make_image(cluster, NEW, how, None,
                               data_of((1 << 20) + 3), file_server,
                               'new-' + how))
    # And one staged on the patched node, imported by 18.0.1.
    image_id = stage_on(cluster, NEW, data_of((1 << 20) + 7))
    image, seen = cluster.client(OLD).import_and_wait(image_id)
    assert image['status'] == 'active', seen
    wait_for_tasks(cluster.admin(OLD))
    made.append(image_id)
    for viewer in NODES:
        for glance in (cluster.client(viewer), cluster.admin(viewer)):
            resp = glance.request('GET', '/v2/images?limit=1000')
            assert resp.status_code == 200, resp.text
            listed = dict((i['id'], i) for i in resp.json()['images'])
            for image_id in made:
                assert reserved_keys(listed[image_id]) == [], (
                    viewer, listed[image_id])
                resp = glance.request('GET', '/v2/images/' + image_id)
                assert resp.status_code == 200, resp.text
                assert reserved_keys(resp.json()) == [], (viewer, resp.text)
                assert 'os_glance' not in resp.text, (viewer, resp.text)
    for image_id in made:
        # Without worker_self_reference_url the patched node records
        # nothing of the stage, and the record of an import goes with
        # its end.
        assert query(cluster, "SELECT name FROM image_properties WHERE "
                     "image_id = ? AND name LIKE 'os_glance%' AND "
                     "deleted = 0", image_id) == []
        assert cluster.client(OLD).delete(image_id).status_code == 204


def forge_record(cluster, image_id, url):
    """Write the record into the database as 18.0.1 would have let an
    API user set it before the protection rule was in place."""
    now = datetime.datetime.utcnow().strftime('%Y-%m-%d %H:%M:%S.%f')
    conn = sqlite3.connect(cluster.db, timeout=30)
    try:
        with conn:
            conn.execute(
                'INSERT INTO image_properties (image_id, name, value, '
                'created_at, updated_at, deleted) VALUES (?, ?, ?, ?, ?, 0)',
                (image_id, STAGE_HOST, url, now, now))
    finally:
        conn.close()


def test_a_forged_record_is_never_followed(cluster, listener, figures):
    """No node sends a request to the URL a forged record names.

    Images staged on each node carry a forged os_glance_stage_host
    naming the listener; they are shown, staged again, imported and
    deleted through both nodes, and the listener receives nothing.
    """
    forged = listener.url
    probe = requests.get(forged + '/probe', timeout=10)
    assert probe.status_code == 200
    assert listener.received()[0] == 1

    data = {}
    for stager in NODES:
        for then in ('import', 'delete'):
            image_id = stage_on(cluster, stager, data_of((1 << 20) + 23))
            data[(stager, then)] = (image_id,
                                    read(os.path.join(cluster.staging,
                                                      image_id)))
            forge_record(cluster, image_id, forged)
            assert properties_in_db(cluster, image_id, STAGE_HOST) == [
                (forged, 0)]
    for (stager, then), (image_id, _data) in sorted(data.items()):
        for node in NODES:
            for glance in (cluster.client(node), cluster.admin(node)):
                resp = glance.request('GET', '/v2/images/' + image_id)
                assert resp.status_code == 200, resp.text
                assert 'os_glance' not in resp.text, (node, resp.text)
                assert forged not in resp.text, (node, resp.text)
            # Staging again asks the node a record names whether it is
            # alive (the patched node only with worker_self_reference_url
            # set): refused, the data kept.
            resp = cluster.client(node).stage(image_id, b'again')
            assert resp.status_code == 409, (node, message(resp))
        try_to_write(cluster, image_id, 'http://127.0.0.1:9/')
        assert properties_in_db(cluster, image_id, STAGE_HOST) == [
            (forged, 0)]
    assert listener.received()[0] == 1

    for (stager, then), (image_id, staged) in sorted(data.items()):
        other = OTHER[stager]
        if then == 'import':
            image, seen = cluster.client(other).import_and_wait(image_id)
            assert image['status'] == 'active', (stager, seen)
            wait_for_tasks(cluster.admin(other))
            assert image['checksum'] == md5(staged)
            assert staged_files(cluster, image_id) == []
            for node in NODES:
                resp = cluster.client(node).request(
                    'GET', '/v2/images/' + image_id)
                assert 'os_glance' not in resp.text, (node, resp.text)
        resp = cluster.client(other).delete(image_id)
        assert resp.status_code == 204, (stager, then, message(resp))
        assert staged_files(cluster, image_id) == []
    connections, got = listener.received()
    assert (connections, [r['path'] for r in got]) == (1, ['/probe']), (
        'the listener named by a forged record was reached: %d '
        'connections, requests %s' % (connections, got[1:]))
    for node in NODES:
        assert forged not in cluster.log(node), node
    figures.append('rolling upgrade: 4 images staged with a forged %s '
                   'naming a listener: hidden by both nodes, stage again '
                   '409, imported and deleted across the nodes; the '
                   'listener received 0 connections' % STAGE_HOST)


# ------------------------------------------------- nodes restarted, upgraded

def test_restarting_the_new_node_keeps_what_the_old_node_staged(cluster):
    data = data_of((1 << 20) + 17)
    image_id = stage_on(cluster, OLD, data)
    api = cluster.apis[NEW]
    api.stop()
    # Its start-up clean-up looks at the shared staging directory.
    cluster.apis[NEW] = glance_demo.GlanceApi(api.python, api.layout,
                                              api.port)
    cluster.apis[NEW].start()
    assert read(os.path.join(cluster.staging, image_id)) == data
    for node in NODES:
        assert cluster.client(node).status(image_id) == 'uploading'
    image, seen = cluster.client(NEW).import_and_wait(image_id)
    assert image['status'] == 'active', seen
    wait_for_tasks(cluster.admin(NEW))
    assert cluster.client(OLD).download(image_id).content == data
    assert cluster.client(OLD).delete(image_id).status_code == 204


def test_upgrading_the_old_node_strands_nothing(cluster, glance_python,
                                                figures):
    """The last step of the upgrade: the 18.0.1 node runs the series.

    It keeps its glance-api.conf as it was (node_staging_uri and
    [task]/work_dir, no reserved store section): the series takes the
    reserved stores' directories from those options, with a warning,
    and imports what 18.0.1 had staged before it was stopped.
    """
    data = data_of((1 << 20) + 19)
    image_id = stage_on(cluster, OLD, data)
    old = cluster.apis[OLD]
    assert old.stop() is not None
    with open(old.layout.conf) as f:
        conf = f.read()
    assert 'os_glance' not in conf
    started = time.monotonic()
    cluster.apis[OLD] = glance_demo.GlanceApi(glance_python, old.layout,
                                              old.port)
    cluster.apis[OLD].start()
    figures.append('rolling upgrade: the 18.0.1 node restarted with the '
                   'series and its old configuration in %.1f s'
                   % (time.monotonic() - started))
    log = cluster.log(OLD)
    for store in (STAGING, TASKS):
        assert 'The reserved store %s takes its' % store in log
    assert read(os.path.join(cluster.staging, image_id)) == data
    upgraded = cluster.client(OLD)
    assert upgraded.status(image_id) == 'uploading'
    image, seen = upgraded.import_and_wait(image_id, store='cheap')
    assert image['status'] == 'active', seen
    wait_for_tasks(cluster.admin(OLD))
    assert image['checksum'] == md5(data)
    assert staged_files(cluster, image_id) == []
    assert cluster.client(NEW).download(image_id).content == data
    assert cluster.client(NEW).delete(image_id).status_code == 204
