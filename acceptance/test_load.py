"""Load: many clients import at once, and the staging store ends empty.

CLIENTS threads, each a client of its own, start together and each
creates an image, stages SIZE bytes of random data, imports it with
glance-direct and waits for it to be active; then it checks the image's
size, checksum and store, and downloads the data to compare it.  Every
client must succeed, and at the end the staging and tasks datadirs are
empty and the default store holds exactly the images imported.

glance-api runs as the demo's, with workers = 0: one process whose
eventlet green threads serve every request and run every import task, the
configuration of a small deployment and the one the other acceptance
tests use.  Everything is bounded: each request (glance_http.TIMEOUT) and
the whole run (DEADLINE).  The figures (clients, size, wall time,
failures) are printed in the "figures" section of the pytest summary and
written to load.json in the acceptance tests' base directory.
"""

import concurrent.futures
import hashlib
import json
import os
import threading
import time

import glance_demo
from glance_http import Glance
from glance_http import md5
from glance_http import settled

CLIENTS = 20
SIZE = 16 << 20
DEADLINE = 300          # seconds for the whole run
SETTLE = 10             # seconds for the last tasks to end
CHUNK = 1 << 20


def one_client(url, barrier, deadline):
    """Create, stage, import, check; return (image id, seconds taken).

    The clients generate their data, then wait for each other and start
    together; the wall time is counted from then.
    """
    glance = Glance(url)
    data = os.urandom(SIZE)
    barrier.wait(timeout=60)
    started = time.monotonic()
    image = glance.create_image('load')
    image_id = image['id']
    resp = glance.stage(image_id, data)
    assert resp.status_code == 204, (image_id, 'stage', resp.text)
    since = glance.image(image_id)['updated_at']
    resp = glance.import_image(image_id)
    assert resp.status_code == 202, (image_id, 'import', resp.text)
    image, seen = glance.wait_for_import(
        image_id, since, timeout=max(1, deadline - time.monotonic()))
    assert image['status'] == 'active', (image_id, seen)
    assert image['size'] == SIZE, image
    assert image['checksum'] == md5(data), image
    assert image['stores'] == glance_demo.DEFAULT_STORE, image

    resp = glance.request('GET', '/v2/images/%s/file' % image_id,
                          stream=True)
    assert resp.status_code == 200, (image_id, 'download', resp.text)
    digest = hashlib.md5()
    for chunk in resp.iter_content(CHUNK):
        digest.update(chunk)
    assert digest.hexdigest() == md5(data), (image_id, 'downloaded data')
    return image_id, time.monotonic() - started


def test_concurrent_clients_all_import_and_staging_ends_empty(
        own_api, tmpdir_factory, figures):
    layout = own_api.layout
    released = []       # when the clients were let go, all at once
    barrier = threading.Barrier(
        CLIENTS, action=lambda: released.append(time.monotonic()))
    started = time.monotonic()
    deadline = started + DEADLINE
    failures = []
    done = []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=CLIENTS)
    try:
        futures = [pool.submit(one_client, own_api.url, barrier, deadline)
                   for _ in range(CLIENTS)]
        finished, late = concurrent.futures.wait(
            futures, timeout=DEADLINE + 60)
        wall = time.monotonic() - (released or [started])[0]
        for future in finished:
            try:
                done.append(future.result())
            except Exception as exc:
                failures.append('%s: %s' % (type(exc).__name__, exc))
        failures += ['still running after %d s' % (DEADLINE + 60)] * \
            len(late)
    finally:
        pool.shutdown(wait=False)

    datadirs = layout.datadirs
    # glance-api shows an image active a step before the import's task
    # lets its lock in the staging store go (see settled).
    staging = settled(lambda: glance_demo.list_files(
        datadirs[glance_demo.STAGING_STORE]), [], timeout=SETTLE)
    tasks = glance_demo.list_files(datadirs[glance_demo.TASKS_STORE])
    stored = glance_demo.list_files(datadirs[glance_demo.DEFAULT_STORE])
    slowest = max([seconds for _id, seconds in done] or [0])
    figure = ('load: %d clients x %d MiB (create, stage, glance-direct '
              'import, download), workers=0: wall %.1f s, slowest client '
              '%.1f s, %d failures, %d files left in staging'
              % (CLIENTS, SIZE >> 20, wall, slowest, len(failures),
                 len(staging)))
    figures.append(figure)
    with open(os.path.join(str(tmpdir_factory.getbasetemp()), 'load.json'),
              'w') as f:
        json.dump({'clients': CLIENTS, 'size': SIZE, 'workers': 0,
                   'wall_seconds': round(wall, 1),
                   'slowest_client_seconds': round(slowest, 1),
                   'failures': len(failures), 'failure_details': failures,
                   'left_in_staging': staging}, f, indent=1)

    assert failures == [], figure
    assert staging == [], figure
    assert tasks == [], figure
    assert stored == sorted(image_id for image_id, _s in done), figure
    for image_id in stored:
        path = os.path.join(datadirs[glance_demo.DEFAULT_STORE], image_id)
        assert os.path.getsize(path) == SIZE
    # Leave no 320 MiB behind.
    glance = Glance(own_api.url)
    for image_id, _s in done:
        assert glance.delete(image_id).status_code == 204
    assert glance_demo.list_files(datadirs[glance_demo.DEFAULT_STORE]) == []
