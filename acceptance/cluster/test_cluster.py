"""Three glance-api nodes behind HAProxy, each with its own staging dir.

Any node can serve any request: data staged through one node is imported
through another (the import goes to the node holding the data, named by
its worker_self_reference_url), a stage deleted through another node
leaves nothing behind once its node restarts, an import asked for while
the holding node is down fails with a clear 5xx and loses nothing, and
concurrent clients through HAProxy all end active.
"""

import concurrent.futures
import os
import statistics
import threading
import time

import pytest

from glance_http import Glance
from glance_http import md5
from glance_http import message
from glance_http import settled

from glance_cluster import make_cluster

SIZE = 16 << 20
CLIENTS = 10
DEADLINE = 240          # seconds for the concurrent clients together


@pytest.fixture(scope='module')
def cluster(request, tmpdir_factory, file_server):
    cluster = make_cluster(request, tmpdir_factory, False, file_server)
    yield cluster
    cluster.stop()


@pytest.fixture
def made(cluster):
    """The ids of the images a test makes: deleted after it."""
    ids = []
    yield ids
    cluster.delete_all(ids)


def stage_and_check(glance, node, image_id, data):
    resp = glance.stage(image_id, data)
    assert resp.status_code == 204, resp.text
    assert glance.status(image_id) == 'uploading'
    assert node.cluster.staged_of([image_id]) == [(node.name, image_id)], (
        'the data staged through %s is not (only) in its staging dir'
        % node.name)


def test_stage_on_one_node_import_on_another(cluster, made, figures):
    node1, node2, _node3 = cluster.nodes
    data = os.urandom(SIZE)
    image_id = node1.client().create_image('cluster-stage-1')['id']
    made.append(image_id)
    stage_and_check(node1.client(), node1, image_id, data)
    before = cluster.forwarded()
    image, states = node2.client().import_and_wait(image_id)
    assert image['status'] == 'active', states
    assert image['checksum'] == md5(data)
    assert image['size'] == SIZE
    assert node2.client().download(image_id).content == data
    assert settled(lambda: cluster.staged_of([image_id]), []) == []
    forwarded = cluster.forwarded() - before
    assert forwarded == 1, ('node2 logged %d forwarded imports'
                            % forwarded)
    figures.append('cluster (per-node staging): staged through node1, '
                   'imported through node2: forwarded, active, checksum '
                   'right, staging dirs empty')


def test_web_download_through_the_load_balancer(cluster, file_server,
                                                made, figures):
    data = os.urandom(SIZE)
    with open(os.path.join(file_server.directory, 'cluster.img'),
              'wb') as f:
        f.write(data)
    glance = cluster.client()
    image_id = glance.create_image('cluster-web')['id']
    made.append(image_id)
    started = time.monotonic()
    image, states = glance.import_and_wait(
        image_id, method='web-download', uri=file_server.url('cluster.img'))
    assert image['status'] == 'active', states
    assert image['checksum'] == md5(data)
    assert glance.download(image_id).content == data
    assert settled(lambda: cluster.staged_of([image_id]), []) == []
    figures.append('cluster: web-download of %d MiB through HAProxy: '
                   'active in %.1f s' % (SIZE >> 20,
                                         time.monotonic() - started))


def test_delete_through_another_node(cluster, made, figures):
    node1, _node2, node3 = cluster.nodes
    data = os.urandom(SIZE)
    image_id = node1.client().create_image('cluster-delete')['id']
    made.append(image_id)
    stage_and_check(node1.client(), node1, image_id, data)
    resp = node3.client().delete(image_id)
    assert resp.status_code == 204, resp.text
    for node in cluster.nodes:
        resp = node.client().request('GET', '/v2/images/' + image_id)
        assert resp.status_code == 404, (node.name, resp.text)
    left = settled(lambda: cluster.staged_of([image_id]), [], timeout=5)
    node1.stop()
    node1.start()
    assert settled(lambda: cluster.staged_of([image_id]), []) == [], (
        "node1's staging dir still holds the data of image %s deleted "
        "through node3, after node1 restarted" % image_id)
    figures.append('cluster: staged on node1, deleted through node3: 404 '
                   'everywhere; node1 staging %s before its restart, '
                   'empty after' % ('empty' if not left else 'held it'))


def test_import_while_the_holding_node_is_down(cluster, made, figures):
    node1, node2, _node3 = cluster.nodes
    data = os.urandom(SIZE)
    image_id = node1.client().create_image('cluster-down')['id']
    made.append(image_id)
    stage_and_check(node1.client(), node1, image_id, data)
    node1.stop()
    try:
        glance = node2.client()
        resp = glance.import_image(image_id)
        text = message(resp)
        assert 500 <= resp.status_code < 600, (resp.status_code, text)
        assert image_id in text, 'the %d does not name the image: %s' % (
            resp.status_code, text)
        image = glance.image(image_id)
        assert image['status'] == 'uploading', image
        assert cluster.staged_of([image_id]) == [('node1', image_id)]
    finally:
        node1.start()
    image, states = node2.client().import_and_wait(image_id)
    assert image['status'] == 'active', states
    assert image['checksum'] == md5(data)
    assert settled(lambda: cluster.staged_of([image_id]), []) == []
    figures.append('cluster: import through node2 while node1 (holding '
                   'the data) is down: %d "%s"; after node1 started: '
                   'active' % (resp.status_code, text[:100]))


def one_client(url, barrier, deadline, made):
    """Create, stage, import through HAProxy; (id, seconds to active)."""
    glance = Glance(url)
    data = os.urandom(SIZE)
    barrier.wait(timeout=60)
    started = time.monotonic()
    image_id = glance.create_image('cluster-load')['id']
    made.append(image_id)
    resp = glance.stage(image_id, data)
    assert resp.status_code == 204, (image_id, 'stage', resp.text)
    since = glance.image(image_id)['updated_at']
    resp = glance.import_image(image_id)
    assert resp.status_code == 202, (image_id, 'import', message(resp))
    image, seen = glance.wait_for_import(
        image_id, since, timeout=max(1, deadline - time.monotonic()))
    assert image['status'] == 'active', (image_id, seen)
    assert image['checksum'] == md5(data), image
    return image_id, time.monotonic() - started


def test_concurrent_clients_through_haproxy(cluster, made, figures):
    released = []
    barrier = threading.Barrier(
        CLIENTS, action=lambda: released.append(time.monotonic()))
    deadline = time.monotonic() + DEADLINE
    served_before = cluster.haproxy.served_by()
    forwarded_before = cluster.forwarded()
    failures, done = [], []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=CLIENTS)
    try:
        futures = [pool.submit(one_client, cluster.haproxy.url, barrier,
                               deadline, made) for _ in range(CLIENTS)]
        finished, late = concurrent.futures.wait(futures,
                                                 timeout=DEADLINE + 60)
        for future in finished:
            try:
                done.append(future.result())
            except Exception as exc:
                failures.append('%s: %s' % (type(exc).__name__, exc))
        failures += ['still running after %d s' % (DEADLINE + 60)] * \
            len(late)
    finally:
        pool.shutdown(wait=False)
    wall = time.monotonic() - released[0] if released else 0
    seconds = sorted(s for _id, s in done) or [0]
    served = cluster.haproxy.served_by()
    spread = ', '.join('%s %d' % (name, served[name] -
                                  served_before[name])
                       for name in sorted(served))
    staged = settled(lambda: cluster.staged_of(made), [])
    figure = ('cluster: %d clients x %d MiB through HAProxy (create, '
              'stage, glance-direct import; 3 nodes x %d workers): '
              'time to active min %.1f / median %.1f / max %.1f s, wall '
              '%.1f s, %.1f MiB/s; %d failures; imports forwarded: %d '
              'log lines; requests per node: %s' % (
                  CLIENTS, SIZE >> 20, 2, seconds[0],
                  statistics.median(seconds), seconds[-1], wall,
                  (len(done) * SIZE / 2.0 ** 20) / wall if wall else 0,
                  len(failures), cluster.forwarded() - forwarded_before,
                  spread))
    figures.append(figure)
    assert failures == [], '%s\n%s' % (figure, '\n'.join(failures))
    assert staged == [], 'left in the staging dirs: %s' % staged
    assert cluster.nothing_staged(), cluster.staged()
