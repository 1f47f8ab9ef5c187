"""Three glance-api nodes behind HAProxy, each with its own staging dir.

Any node can serve any request: data staged through one node is imported
through another (the import goes to the node holding the data, named by
its worker_self_reference_url), a stage deleted through another node is
gone from the holder's staging dir at once (and, if the holder was down,
once it restarts), an import asked for while the holding node is down
fails with a clear 5xx and loses nothing, and concurrent clients through
HAProxy all end active.

The record of the node holding the data, the image property
os_glance_stage_host, is Glance's own: no API user sets, changes,
removes, filters on or sees it through any node, and a URL an API user
tries to write there is never sent a request.  What a node passes on is
what the holder's authentication reads: no client header keeps a node
from passing an import on, and a user who may not see the image is
refused by the node the request reaches, with nothing passed on.
"""

import concurrent.futures
import json
import os
import statistics
import threading
import time

import pytest
import requests

import glance_demo
from glance_http import Glance
from glance_http import md5
from glance_http import message
from glance_http import settled

from glance_cluster import make_cluster

SIZE = 16 << 20
CLIENTS = 10
DEADLINE = 240          # seconds for the concurrent clients together

# The property in which a node records that it holds an image's staged
# data, and a variant in another case, refused alike.
STAGE_HOST = 'os_glance_stage_host'
STAGE_HOST_VARIANT = 'OS_Glance_Stage_Host'
PATCH_TYPE = 'application/openstack-images-v2.1-json-patch'
ADMIN_HEADERS = dict(glance_demo.IDENTITY_HEADERS, **{'X-Roles': 'admin'})
# A user of another project, who does not see the demo project's images.
STRANGER_HEADERS = dict(glance_demo.IDENTITY_HEADERS, **{
    'X-User-Id': 'stranger-user', 'X-Tenant-Id': 'stranger-project'})


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


def passed_on(node, what, image_id, url=None):
    """The log lines of node passing the import/delete of an image on."""
    prefix = 'Passing the %s of image %s to ' % (what, image_id)
    if url is not None:
        prefix += url
    return [line for line in node.log_text().splitlines() if prefix in line]


def test_delete_through_another_node(cluster, made, figures):
    node1, _node2, node3 = cluster.nodes
    data = os.urandom(SIZE)
    image_id = node1.client().create_image('cluster-delete')['id']
    made.append(image_id)
    stage_and_check(node1.client(), node1, image_id, data)
    resp = node3.client().delete(image_id)
    assert resp.status_code == 204, resp.text
    # The holder removed its staged data before it answered: no wait,
    # no restart.
    left = cluster.staged_of([image_id])
    assert left == [], (
        "node1's staging dir still holds the data of image %s right after "
        "node3 answered 204 to its delete: %s" % (image_id, left))
    assert len(passed_on(node3, 'delete', image_id, node1.url)) == 1, (
        'node3 did not log passing the delete to node1')
    for node in cluster.nodes:
        resp = node.client().request('GET', '/v2/images/' + image_id)
        assert resp.status_code == 404, (node.name, resp.text)
    figures.append('cluster: staged on node1, deleted through node3: 204, '
                   'passed to node1, node1 staging dir empty right after '
                   'the 204 (no restart), 404 everywhere')


def test_delete_through_another_node_while_the_holder_is_down(
        cluster, made, figures):
    node1, node2, node3 = cluster.nodes
    data = os.urandom(SIZE)
    image_id = node1.client().create_image('cluster-delete-down')['id']
    made.append(image_id)
    stage_and_check(node1.client(), node1, image_id, data)
    node1.stop()
    try:
        started = time.monotonic()
        resp = node3.client().delete(image_id)
        took = time.monotonic() - started
        assert resp.status_code == 204, message(resp)
        warning = 'Cannot pass the delete of image %s to %s' % (image_id,
                                                                node1.url)
        assert warning in node3.log_text(), 'node3 logged no "%s"' % warning
        for node in (node2, node3):
            resp = node.client().request('GET', '/v2/images/' + image_id)
            assert resp.status_code == 404, (node.name, resp.text)
        # Nothing could remove the data of the stopped node meanwhile.
        assert cluster.staged_of([image_id]) == [('node1', image_id)]
    finally:
        node1.start()
    started = time.monotonic()
    left = settled(lambda: cluster.staged_of([image_id]), [])
    assert left == [], (
        "node1's staging dir still holds the data of image %s, deleted "
        "through node3 while node1 was down, after node1 restarted: %s"
        % (image_id, left))
    gone = time.monotonic() - started
    resp = node1.client().request('GET', '/v2/images/' + image_id)
    assert resp.status_code == 404, resp.text
    figures.append('cluster: staged on node1, node1 stopped, deleted '
                   'through node3: 204 in %.1f s, 404 on node2 and node3, '
                   'the data kept on node1 until it restarted, gone %.1f s '
                   'after its start' % (took, gone))


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


# ------------------------------------ the record of the node holding data

def patch(glance, image_id, changes):
    return glance.request('PATCH', '/v2/images/' + image_id,
                          data=json.dumps(changes),
                          headers={'Content-Type': PATCH_TYPE})


def reserved_keys(view):
    """The keys of an image view that lie in the os_glance_ space."""
    return sorted(key for key in view
                  if key.strip().lower().startswith('os_glance_'))


def entry_points(cluster):
    """(name, client) of each node and of HAProxy."""
    return [(node.name, node.client()) for node in cluster.nodes] + [
        ('haproxy', cluster.client())]


def assert_refused(resp, status, name, what):
    text = message(resp)
    assert resp.status_code == status, (what, resp.status_code, text)
    assert name in text, ('%s: the %d does not name %s: %s'
                          % (what, status, name, text))


def assert_write_refused(glance, where, image_id, forged):
    """Every way an API user may write the record is refused with 403."""
    for name in (STAGE_HOST, STAGE_HOST_VARIANT):
        for op in ('add', 'replace', 'remove'):
            change = {'op': op, 'path': '/' + name}
            if op != 'remove':
                change['value'] = forged
            assert_refused(patch(glance, image_id, [change]), 403, name,
                           '%s: PATCH %s %s' % (where, op, name))


def assert_not_shown(glance, where, image_id):
    resp = glance.request('GET', '/v2/images/' + image_id)
    assert resp.status_code == 200, (where, resp.text)
    assert reserved_keys(resp.json()) == [], (where, resp.json())
    assert 'os_glance' not in resp.text.lower(), (where, resp.text)
    resp = glance.request('GET', '/v2/images?limit=1000')
    assert resp.status_code == 200, (where, resp.text)
    listed = [image for image in resp.json()['images']
              if image['id'] == image_id]
    assert len(listed) == 1, (where, 'the image is not listed')
    assert reserved_keys(listed[0]) == [], (where, listed[0])
    assert 'os_glance' not in resp.text.lower(), where


def test_forged_stage_record_is_refused_and_never_followed(
        cluster, made, listener, file_server, figures):
    """A client cannot make any node send a request to a URL of its own.

    Through each node and HAProxy the record os_glance_stage_host is
    refused on create (also in another case, also through the tasks
    API), on PATCH add, replace and remove, and as a list filter; no
    image shows it, not even one staged (which records its node); the
    import and deletes that follow go to the nodes the images really
    record, and the listener the forged value names receives nothing.
    """
    node1, node2, node3 = cluster.nodes
    forged = listener.url
    # The listener does record what reaches it.
    probe = requests.get(forged + '/probe', timeout=10)
    assert probe.status_code == 200
    assert listener.received()[0] == 1
    assert [r['path'] for r in listener.received()[1]] == ['/probe']

    refusals = 0
    queued = []
    for where, glance in entry_points(cluster):
        for name in (STAGE_HOST, STAGE_HOST_VARIANT):
            resp = glance.request('POST', '/v2/images', json={
                'name': 'cluster-forged', 'disk_format': 'raw',
                'container_format': 'bare', name: forged})
            assert_refused(resp, 403, name, '%s: create with %s'
                           % (where, name))
            refusals += 1
        image_id = glance.create_image('cluster-forged-queued')['id']
        made.append(image_id)
        queued.append(image_id)
        assert_write_refused(glance, where, image_id, forged)
        refusals += 6
        for name in (STAGE_HOST, STAGE_HOST_VARIANT):
            resp = glance.request('GET', '/v2/images',
                                  params={name: forged})
            assert_refused(resp, 400, name, '%s: list filtered by %s'
                           % (where, name))
            refusals += 1
        admin = Glance(glance.url)
        admin.session.headers.update(ADMIN_HEADERS)
        resp = admin.request('POST', '/v2/tasks', json={
            'type': 'import', 'input': {
                'import_from': file_server.url('cluster-forged.raw'),
                'import_from_format': 'raw',
                'image_properties': {
                    'disk_format': 'raw', 'container_format': 'bare',
                    STAGE_HOST: forged}}})
        assert_refused(resp, 403, STAGE_HOST, '%s: task with %s'
                       % (where, STAGE_HOST))
        refusals += 1
        assert_not_shown(glance, where, image_id)
    # No refused create made an image.
    resp = cluster.client().request('GET', '/v2/images',
                                    params={'name': 'cluster-forged'})
    assert resp.status_code == 200, resp.text
    assert resp.json()['images'] == []

    # A staged image records node1, and shows it to no one.
    data = os.urandom(SIZE)
    image_id = node1.client().create_image('cluster-forged-staged')['id']
    made.append(image_id)
    stage_and_check(node1.client(), node1, image_id, data)
    for where, glance in entry_points(cluster):
        assert_not_shown(glance, where, image_id)
        assert_write_refused(glance, where, image_id, forged)
        refusals += 6
        assert glance.status(image_id) == 'uploading'

    image, states = node2.client().import_and_wait(image_id)
    assert image['status'] == 'active', states
    assert image['checksum'] == md5(data)
    assert image['size'] == SIZE
    assert reserved_keys(image) == [], image
    assert len(passed_on(node2, 'import', image_id, node1.url)) == 1, (
        'node2 did not pass the import to node1, the node holding the data')
    assert settled(lambda: cluster.staged_of([image_id]), []) == []
    for where, glance in entry_points(cluster):
        assert_not_shown(glance, where, image_id)
    # The deletes: of images never staged, and of the imported one.
    for glance, queued_id in zip([node3.client(), node2.client(),
                                  node1.client(), cluster.client()],
                                 queued):
        assert glance.delete(queued_id).status_code == 204
    assert node3.client().delete(image_id).status_code == 204

    for node in cluster.nodes:
        for line in node.log_text().splitlines():
            assert not ('Passing the ' in line and forged in line), (
                node.name, line)
    connections, got = listener.received()
    assert (connections, [r['path'] for r in got]) == (1, ['/probe']), (
        'the listener named by the forged record was reached: %d '
        'connections, requests %s' % (connections, got[1:]))
    figures.append('cluster: forged os_glance_stage_host through 3 nodes '
                   'and HAProxy: %d refusals (403 create, PATCH add/'
                   'replace/remove, tasks; 400 list filter), never shown; '
                   'staged on node1, imported through node2: passed to '
                   'node1, active, checksum right; the forged URL\'s '
                   'listener received 0 connections' % refusals)


def test_a_forwarded_by_header_keeps_no_node_from_passing_on(cluster, made,
                                                             figures):
    """The header an earlier design trusted is ignored: node2 passes on."""
    node1, node2, _node3 = cluster.nodes
    data = os.urandom(SIZE)
    image_id = node1.client().create_image('cluster-forwarded-by')['id']
    made.append(image_id)
    stage_and_check(node1.client(), node1, image_id, data)
    glance = node2.client()
    since = glance.image(image_id)['updated_at']
    resp = glance.request(
        'POST', '/v2/images/%s/import' % image_id,
        json={'method': {'name': 'glance-direct'}},
        headers={'X-Glance-Import-Forwarded-By': node1.url})
    assert resp.status_code == 202, message(resp)
    assert len(passed_on(node2, 'import', image_id, node1.url)) == 1, (
        'node2 did not pass the import to node1 despite the client header')
    image, states = glance.wait_for_import(image_id, since)
    assert image['status'] == 'active', (
        'the image was not imported (not handed back to queued): %s'
        % states)
    assert 'queued' not in states, states
    assert image['checksum'] == md5(data)
    assert passed_on(node1, 'import', image_id) == [], (
        'node1, holding the data, passed the import on again')
    assert settled(lambda: cluster.staged_of([image_id]), []) == []
    # Node1 ran the import as the user: the task is the user's.
    admin = Glance(node1.url)
    admin.session.headers.update(ADMIN_HEADERS)
    resp = admin.request('GET', '/v2/tasks?limit=1000')
    assert resp.status_code == 200, resp.text
    owners = []
    for task in resp.json()['tasks']:
        shown = admin.request('GET', '/v2/tasks/' + task['id']).json()
        if (shown.get('input') or {}).get('image_id') == image_id:
            owners.append((shown['owner'], shown['status']))
    assert owners == [(glance_demo.IDENTITY_HEADERS['X-Tenant-Id'],
                       'success')], owners
    figures.append('cluster: import through node2 with a client header '
                   'X-Glance-Import-Forwarded-By naming node1: passed to '
                   'node1 all the same, active (%s), the task the user\'s'
                   % ' -> '.join(states))


def test_another_projects_user_is_refused_where_the_request_lands(
        cluster, made, figures):
    node1, node2, node3 = cluster.nodes
    data = os.urandom(SIZE)
    image_id = node1.client().create_image('cluster-stranger')['id']
    made.append(image_id)
    stage_and_check(node1.client(), node1, image_id, data)
    stranger2, stranger3 = Glance(node2.url), Glance(node3.url)
    for glance in (stranger2, stranger3):
        glance.session.headers.update(STRANGER_HEADERS)
    resp = stranger2.import_image(image_id)
    assert resp.status_code == 404, (resp.status_code, message(resp))
    resp = stranger3.delete(image_id)
    assert resp.status_code == 404, (resp.status_code, message(resp))
    for node in cluster.nodes:
        for what in ('import', 'delete'):
            assert passed_on(node, what, image_id) == [], (
                '%s passed the %s of a stranger on' % (node.name, what))
    # Nothing changed for the image's own users.
    assert node2.client().status(image_id) == 'uploading'
    assert cluster.staged_of([image_id]) == [('node1', image_id)]
    image, states = node3.client().import_and_wait(image_id)
    assert image['status'] == 'active', states
    assert image['checksum'] == md5(data)
    assert settled(lambda: cluster.staged_of([image_id]), []) == []
    figures.append('cluster: import through node2 and delete through node3 '
                   'by a user of another project: 404 on the receiving '
                   'node, nothing passed on; the image then imported by '
                   'its owner')
