"""Three glance-api nodes behind HAProxy sharing one staging directory.

Data staged through one node imports through another; a node killed
with SIGKILL in the middle of a stage is restarted while the others
serve on, and the image is staged again through another node once the
stage is abandoned, then imported: nothing is left behind.
"""

import os
import re
import threading
import time

import pytest
import requests

import glance_demo
from glance_http import md5
from glance_http import message
from glance_http import settled

from glance_cluster import make_cluster

SIZE = 16 << 20
BIG = 256 << 20
CHUNK = 1 << 20
# The abandonment threshold when the patched tree does not say.
TAKEOVER = int(os.environ.get('GLANCE_CLUSTER_TAKEOVER_SECONDS') or 120)
WAIT = 60


@pytest.fixture(scope='module')
def cluster(request, tmpdir_factory, file_server):
    cluster = make_cluster(request, tmpdir_factory, True, file_server)
    yield cluster
    cluster.stop()


@pytest.fixture
def made(cluster):
    """The ids of the images a test makes: deleted after it."""
    ids = []
    yield ids
    cluster.delete_all(ids)


def test_shared_staging_stage_on_one_import_on_another(cluster, made,
                                                       figures):
    node1, node2, _node3 = cluster.nodes
    data = os.urandom(SIZE)
    glance = node1.client()
    image_id = glance.create_image('cluster-shared')['id']
    made.append(image_id)
    resp = glance.stage(image_id, data)
    assert resp.status_code == 204, resp.text
    assert image_id in node1.staged()
    image, states = node2.client().import_and_wait(image_id)
    assert image['status'] == 'active', states
    assert image['checksum'] == md5(data)
    assert settled(node1.staged, []) == []
    figures.append('cluster (shared staging): staged through node1, '
                   'imported through node2: active, staging dir empty')


class Sender(object):
    """Streams data in chunks; pauses after pause_after bytes."""

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


class Poller(object):
    """Keeps asking the given nodes and HAProxy for the image list."""

    def __init__(self, urls):
        self.urls = urls
        self.stop = threading.Event()
        self.answers = dict((url, 0) for url in urls)
        self.errors = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        session = requests.Session()
        session.headers.update(glance_demo.IDENTITY_HEADERS)
        while not self.stop.is_set():
            for url in self.urls:
                try:
                    resp = session.get(url + '/v2/images', timeout=30)
                    if resp.status_code == 200:
                        self.answers[url] += 1
                    else:
                        self.errors.append('%s: %d' % (url,
                                                       resp.status_code))
                except requests.RequestException as exc:
                    self.errors.append('%s: %s' % (url, exc))
            time.sleep(0.1)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(WAIT)


def start_paused_stage(glance, image_id, data, node):
    """Stage data through glance in a thread, paused at half the data.

    Returns (sender, thread, outcome) once a quarter of the data is in
    node's staging dir.
    """
    sender = Sender(data, pause_after=len(data) // 2)
    outcome = {}

    def stage():
        try:
            outcome['resp'] = glance.stage(image_id, iter(sender))
        except requests.RequestException as exc:
            outcome['error'] = exc

    thread = threading.Thread(target=stage, daemon=True)
    thread.start()
    assert sender.paused.wait(WAIT), 'the client never sent half the data'
    deadline = time.monotonic() + WAIT
    while sum(os.path.getsize(os.path.join(node.staging, name))
              for name in node.staged()
              if name.startswith(image_id)) < len(data) // 4:
        assert time.monotonic() < deadline, (
            'a quarter of the data never reached the staging dir: %s'
            % node.staged())
        time.sleep(0.05)
    return sender, thread, outcome


def test_restart_of_a_node_spares_the_stage_of_another(cluster, made,
                                                       figures):
    """Shared staging: node1 restarts while node2 stages.

    Node1 must not take the data node2 is staging meanwhile.
    """
    node1, node2, node3 = cluster.nodes
    glance = node2.client()
    image_id = glance.create_image('cluster-stage-during-restart')['id']
    made.append(image_id)
    data = os.urandom(BIG // 4)
    sender, thread, outcome = start_paused_stage(glance, image_id, data,
                                                 node2)
    try:
        node1.stop()
        node1.start()
    finally:
        sender.release.set()
        thread.join(WAIT)
    assert 'error' not in outcome, outcome['error']
    assert outcome['resp'].status_code == 204, message(outcome['resp'])
    image, states = node3.client().import_and_wait(image_id)
    assert image['status'] == 'active', states
    assert image['checksum'] == md5(data)
    assert settled(lambda: [n for n in node1.staged()
                            if n.startswith(image_id)], []) == []
    figures.append('cluster (shared staging): node1 restarted while node2 '
                   'staged 64 MiB: the stage completed and imported')


def test_node_killed_during_a_stage(cluster, made, figures):
    """Node1 is killed in the middle of a stage.

    While it is down, the image is staged again through node2 once the
    dead stage counts as abandoned; node1 then restarts while node2,
    node3 and HAProxy serve on, and leaves node2's data alone; node3
    imports it.
    """
    node1, node2, node3 = cluster.nodes
    glance = node1.client()
    image_id = glance.create_image('cluster-killed')['id']
    made.append(image_id)
    data = os.urandom(BIG)
    sender, thread, outcome = start_paused_stage(glance, image_id, data,
                                                 node1)
    node1.kill()
    killed = time.monotonic()
    sender.release.set()
    thread.join(WAIT)
    assert 'resp' not in outcome, outcome['resp'].text
    left_by_kill = node1.staged()
    bound = abandoned_after(cluster) + 60

    with Poller([node2.url, node3.url, cluster.haproxy.url]) as poller:
        # Refused while the dead stage is not yet abandoned, then taken
        # over.
        glance2 = node2.client()
        refusals = []
        while True:
            resp = glance2.stage(image_id, data)
            if resp.status_code == 204:
                break
            refusals.append('%d %s' % (resp.status_code, message(resp)))
            assert time.monotonic() - killed < bound, (
                'the image could not be staged again through node2 within '
                '%d s of the kill of node1 (abandoned after %d s): %s' % (
                    bound, abandoned_after(cluster), refusals[-3:]))
            time.sleep(5)
        staged_again = time.monotonic() - killed
        started = time.monotonic()
        node1.start()
        restarted = time.monotonic() - started
        assert image_id in node1.staged(), (
            'node1 restarting removed the data node2 had staged: %s'
            % node1.staged())
        image, states = node3.client().import_and_wait(image_id)
    assert image['status'] == 'active', states
    assert image['checksum'] == md5(data)
    assert settled(node1.staged, []) == [], 'left in the staging dir'
    for node in cluster.nodes:
        assert glance_demo.list_files(
            node.layout.datadirs[glance_demo.TASKS_STORE]) == []
    assert poller.errors == [], poller.errors[:5]
    figures.append(
        'cluster (shared staging): node1 SIGKILLed in a 256 MiB stage '
        '(left %s); staged again through node2 %.0f s after the kill '
        '(abandoned after %d s; %d refusals before); node1 restarted in '
        '%.1f s, node2\'s data kept; imported through node3: active, '
        'nothing left; node2, node3 and HAProxy answered %d requests '
        'meanwhile, 0 errors' % (
            left_by_kill, staged_again, abandoned_after(cluster),
            len(refusals), restarted, sum(poller.answers.values())))


def abandoned_after(cluster):
    """Seconds after which a stage without news counts as abandoned.

    The feature's constant, read from the patched tree (STALE_AFTER in
    glance/common/staging_records.py), else
    GLANCE_CLUSTER_TAKEOVER_SECONDS or 120.
    """
    path = os.path.join(cluster.tree, 'glance', 'common',
                        'staging_records.py')
    try:
        with open(path) as f:
            found = re.search(r'^STALE_AFTER = (\d+)', f.read(), re.M)
    except FileNotFoundError:
        found = None
    if found:
        return int(found.group(1))
    return TAKEOVER
