"""A node killed at any moment: no image stuck for good, no orphan file.

Three glance-api nodes (workers = 2) behind HAProxy, with a staging
directory per node (seed 1) and with one shared staging directory
(seed 2).  Several careful clients each create an image, stage 1-16 MiB
through a random entry (HAProxy or one node directly), import it
(glance-direct) through a random entry, poll it and check its data by
downloading it, again and again.  Meanwhile one random node at a time
is killed with SIGKILL (its whole process group: the parent and its
workers) at a random instant, every few seconds, and started again.

Then the kills stop, every node is restarted once (SIGTERM, all three
together, while the clients go on), and the cluster gets a bounded time
to recover: the time after which the product counts a dead node's stage
or import as abandoned (the stale time, see stale_after), plus a margin.
The clients go on finishing their images meanwhile, and delete the
images they could not finish.  At the end:

* every image of the project is active with the data its client sent
  (size and checksum) or deleted: an image that no careful client could
  bring to active within the bound is "stuck";
* no staging or tasks directory holds anything;
* no file in the operator stores ("fast", "cheap") that no image
  location names ("orphans").

Each run prints one line of figures in the "figures" section, and
writes kills-report.txt next to its cluster's files: each kill and each
final restart with what was in flight then, and for each stuck image,
orphan file or file left in a staging dir what its client did and got
and every node's log lines about it.  A failure message starts with it.
"""

import hashlib
import os
import random
import re
import threading
import time

import pytest
import requests

import glance_demo
from glance_http import Glance
from glance_http import message
from glance_http import settled

from glance_cluster import make_cluster

CLIENTS = 6
SIZES_MIB = (1, 16)
LOAD = 40               # seconds of load (and kills) per run
KILL_EVERY = (2, 6)     # seconds between kills, random in this range
# The runs: (shared staging directory, seed); one seed per layout, to
# keep the job within CI's time.
RUNS = ((False, 1), (True, 2))
MARGIN = 25             # seconds of recovery beyond the stale time
REQUEST_TIMEOUT = 30    # seconds for one request of a client
POLL = 0.5              # seconds between two looks at an image
# Seconds a client waits, after a 202 to its import, for the image to
# leave 'uploading' before it asks for the import again (the node that
# accepted it may have died before its task ran).
ACCEPTED_WAIT = 5
# Seconds an image may stay 'importing' without change before its client
# asks for the import again (the stale time if shorter): the next import
# may take over one whose process died.
IMPORT_PATIENCE = 10
# The stale time when the patched tree does not say (see stale_after).
DEFAULT_STALE = 60

IMAGE_NAME = 'cluster-kills'


# The stale time the nodes are given when the patched tree has an option
# for it (see stale_option), short so that the runs stay short.
SHORT_STALE = 10
STALE_OPTION = re.compile(r"cfg\.IntOpt\(\s*'([a-z_]*(?:stale|abandon|"
                          r"take_?over)[a-z_]*)'")


def stale_option(tree):
    """The [DEFAULT] option of the patched tree that sets the stale time.

    An integer option of glance/ (tests aside) whose name says stale,
    abandoned or take-over; None if there is none.
    """
    top = os.path.join(tree, 'glance')
    for dirpath, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if d != 'tests']
        for name in sorted(files):
            if name.endswith('.py'):
                with open(os.path.join(dirpath, name)) as f:
                    found = STALE_OPTION.search(f.read())
                if found:
                    return found.group(1)
    return None


def stale_after(tree):
    """Seconds after which a dead node's stage or import is abandoned.

    SHORT_STALE when the tree has an option for it (the test sets it),
    else STALE_AFTER in glance/common/staging_records.py of the patched
    tree, else DEFAULT_STALE.
    """
    if stale_option(tree):
        return SHORT_STALE
    path = os.path.join(tree, 'glance', 'common', 'staging_records.py')
    try:
        with open(path) as f:
            found = re.search(r'^STALE_AFTER = (\d+)', f.read(), re.M)
    except FileNotFoundError:
        found = None
    return int(found.group(1)) if found else DEFAULT_STALE


def cluster_options(tree):
    """What the nodes' configuration adds for this scenario.

    show_image_direct_url: each image shows the location of its data,
    which the orphan check compares with the files of the stores; and
    the stale time SHORT_STALE when the tree has an option for it.
    """
    options = {'show_image_direct_url': 'true'}
    option = stale_option(tree)
    if option:
        options[option] = str(SHORT_STALE)
    return {'DEFAULT': options}


class History(object):
    """What happened, timestamped from the start of the run."""

    def __init__(self):
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.events = []        # (t, image id or None, text)
        self.kills = []         # Kill records, see Killer.run
        self.restarts = []      # (t, node name, in flight) at the end

    def now(self):
        return time.monotonic() - self.started

    def add(self, image_id, text):
        with self.lock:
            self.events.append((self.now(), image_id, text))

    def of(self, image_id):
        with self.lock:
            return [(t, text) for t, i, text in self.events
                    if i == image_id]


def describe(resp):
    if isinstance(resp, Exception):
        return '%s: %s' % (type(resp).__name__, str(resp)[:120])
    return '%d %s' % (resp.status_code, message(resp)[:160])


class Client(object):
    """A careful client: its images go to active, or it deletes them.

    It stages through a random entry and imports through a random entry,
    and decides what to do next from the image's status: queued, stage
    (again); uploading, import (after a refused import, stage again);
    importing, wait (and after IMPORT_PATIENCE without change, ask for
    the import again: the next import may take it over); active, check
    the data by downloading it.  Connection errors and 5xx are retried
    after a pause, as are 409s.
    """

    def __init__(self, index, seed, cluster, history, load_end, stale):
        self.index = index
        self.rng = random.Random(seed * 1000 + index)
        self.cluster = cluster
        self.entries = [('haproxy', cluster.haproxy.url)] + [
            (node.name, node.url) for node in cluster.nodes]
        self.sessions = {}
        self.history = history
        self.load_end = load_end
        self.hard_end = None    # set once the nodes have restarted
        self.stale = stale
        self.images = {}        # id -> {'size', 'md5', 'result'}
        self.current = None
        self.finished_at = None
        self.failures = []      # wrong data and the like
        self.counts = dict(conn=0, e5xx=0, e409=0, other=0, cut=0)
        # The request the client is waiting for: (method, path, entry),
        # or None; the image it waits for while it is importing.
        self.doing = None
        self.importing = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True,
                                       name='kills-client-%d' % index)

    # ----------------------------------------------------------- requests

    def entry(self):
        return self.entries[self.rng.randrange(len(self.entries))]

    def session(self, url):
        if url not in self.sessions:
            session = requests.Session()
            session.headers.update(glance_demo.IDENTITY_HEADERS)
            self.sessions[url] = session
        return self.sessions[url]

    def request(self, method, path, entry=None, **kwargs):
        """(entry name, response or exception)."""
        name, url = entry or self.entry()
        kwargs.setdefault('timeout', REQUEST_TIMEOUT)
        self.doing = (method, path, name)
        try:
            resp = self.session(url).request(method, url + path, **kwargs)
        except requests.RequestException as exc:
            self.doing = None
            self.counts['conn'] += 1
            # A connection broken by a kill is not reused.
            self.sessions.pop(url, None)
            return name, exc
        self.doing = None
        if resp.status_code >= 500:
            self.counts['e5xx'] += 1
        elif resp.status_code == 409:
            self.counts['e409'] += 1
        return name, resp

    def deadline(self):
        return self.hard_end if self.hard_end is not None else float('inf')

    def pause(self, low=0.3, high=1.5):
        self.stop.wait(self.rng.uniform(low, high))

    # ------------------------------------------------------------ the loop

    def run(self):
        try:
            n = 0
            while (not self.stop.is_set() and
                   time.monotonic() < self.load_end):
                n += 1
                self.one_image(n)
        except Exception as exc:  # a defect of the test: reported
            self.failures.append('client %d crashed: %s: %s' % (
                self.index, type(exc).__name__, exc))
        finally:
            self.finished_at = time.monotonic()

    def create(self, name):
        """Create an image named name; its id (None if out of time)."""
        while time.monotonic() < self.deadline() and not self.stop.is_set():
            where, resp = self.request('POST', '/v2/images', json={
                'name': name, 'disk_format': 'raw',
                'container_format': 'bare'})
            if not isinstance(resp, Exception) and resp.status_code == 201:
                return resp.json()['id']
            self.history.add(None, '%s create via %s: %s' % (
                name, where, describe(resp)))
            # The image may exist all the same: look it up by its name
            # before creating it again.
            found = self.lookup(name)
            if found:
                for extra in found[1:]:
                    self.delete(extra)
                return found[0]
            self.pause()
        return None

    def lookup(self, name):
        """The ids of the images named name ([] if out of time)."""
        while time.monotonic() < self.deadline() and not self.stop.is_set():
            _where, resp = self.request('GET', '/v2/images',
                                        params={'name': name})
            if not isinstance(resp, Exception) and resp.status_code == 200:
                return [i['id'] for i in resp.json()['images']]
            self.pause()
        return []

    def one_image(self, n):
        name = '%s-%d-%d' % (IMAGE_NAME, self.index, n)
        size = self.rng.randint(*SIZES_MIB) << 20
        data = os.urandom(size)
        image_id = self.create(name)
        if image_id is None:
            return
        self.current = image_id
        record = self.images[image_id] = {
            'size': size, 'md5': hashlib.md5(data).hexdigest(),
            'result': None, 'name': name}
        self.history.add(image_id, 'client %d created %s (%d MiB)' % (
            self.index, name, size >> 20))
        record['result'] = self.drive(image_id, data, record)
        self.history.add(image_id, 'client %d: %s' % (
            self.index, record['result']))
        self.current = None

    def status(self, image_id):
        """The image as an entry shows it; None if unreachable, 'gone'."""
        where, resp = self.request('GET', '/v2/images/' + image_id)
        if isinstance(resp, Exception) or resp.status_code >= 500:
            return None
        if resp.status_code == 404:
            return 'gone'
        if resp.status_code != 200:
            self.counts['other'] += 1
            return None
        return resp.json()

    def drive(self, image_id, data, record):
        """Bring the image to active and check it; what came of it."""
        last_failed = None          # 'stage' or 'import' refused
        importing_since = None
        last_import_ask = 0
        accepted = None             # when an import was last accepted
        while True:
            if self.stop.is_set():
                return 'stopped'
            if time.monotonic() > self.deadline():
                return self.give_up(image_id)
            image = self.status(image_id)
            if image is None:
                self.pause()
                continue
            if image == 'gone':
                self.failures.append('image %s of client %d disappeared '
                                     '(404) without its delete' % (
                                         image_id, self.index))
                return 'disappeared'
            status = image['status']
            self.importing = image_id if status == 'importing' else None
            if status != 'importing':
                importing_since = None
            if status == 'active':
                return self.verify(image_id, image, record)
            if status == 'queued':
                ok = self.stage(image_id, data)
                last_failed = None if ok else 'stage'
            elif status == 'uploading':
                if (accepted is not None and
                        time.monotonic() - accepted < ACCEPTED_WAIT):
                    # Accepted: the task has not taken the image yet.
                    self.stop.wait(POLL)
                    continue
                accepted = None
                if last_failed == 'import':
                    ok = self.stage(image_id, data)
                    last_failed = None if ok else 'stage'
                else:
                    ok = self.import_(image_id)
                    last_failed = None if ok else 'import'
                    if ok:
                        accepted = time.monotonic()
            elif status == 'importing':
                now = time.monotonic()
                accepted = None
                if importing_since is None:
                    importing_since = now
                # The next import may take over one whose node died.
                patience = min(self.stale, IMPORT_PATIENCE)
                if (now - importing_since > patience and
                        now - last_import_ask > patience):
                    last_import_ask = now
                    self.import_(image_id)
                self.stop.wait(POLL)
            elif status == 'killed':
                self.history.add(image_id, 'client %d: killed, deleting'
                                 % self.index)
                self.delete(image_id)
                return 'killed (deleted)'
            else:
                self.history.add(image_id, 'client %d: status %s' % (
                    self.index, status))
                self.stop.wait(POLL)

    def stage(self, image_id, data):
        where, resp = self.request(
            'PUT', '/v2/images/%s/stage' % image_id, data=data,
            headers={'Content-Type': 'application/octet-stream'})
        self.history.add(image_id, 'stage via %s: %s' % (where,
                                                         describe(resp)))
        if not isinstance(resp, Exception) and resp.status_code == 204:
            return True
        self.pause()
        return False

    def import_(self, image_id):
        where, resp = self.request(
            'POST', '/v2/images/%s/import' % image_id,
            json={'method': {'name': 'glance-direct'}})
        self.history.add(image_id, 'import via %s: %s' % (where,
                                                          describe(resp)))
        if not isinstance(resp, Exception) and resp.status_code == 202:
            self.stop.wait(POLL)
            return True
        self.pause()
        return False

    def verify(self, image_id, image, record):
        if (image.get('size') != record['size'] or
                image.get('checksum') != record['md5']):
            self.failures.append(
                'image %s is active with size %s checksum %s; its client '
                'sent %d bytes, md5 %s' % (
                    image_id, image.get('size'), image.get('checksum'),
                    record['size'], record['md5']))
            return 'active with wrong size/checksum'
        cut = 0
        while time.monotonic() < self.deadline() and not self.stop.is_set():
            where, resp = self.request('GET', '/v2/images/%s/file'
                                       % image_id)
            if isinstance(resp, Exception) or resp.status_code >= 500:
                self.pause()
                continue
            length = resp.headers.get('Content-Length')
            if (resp.status_code == 200 and length is not None and
                    int(length) != len(resp.content)):
                # A kill of the node serving it cut the download short
                # (or the data behind it is short: then it stays so).
                self.counts['cut'] += 1
                cut += 1
                self.history.add(image_id, 'download via %s cut short: '
                                 '%d of %s bytes' % (
                                     where, len(resp.content), length))
                if cut < 5:
                    self.pause()
                    continue
            if resp.status_code != 200:
                self.failures.append('download of active image %s via %s: '
                                     '%s' % (image_id, where,
                                             describe(resp)))
                return 'download refused'
            got = hashlib.md5(resp.content).hexdigest()
            if len(resp.content) != record['size'] or got != record['md5']:
                self.failures.append(
                    'image %s downloaded via %s: %d bytes md5 %s; its '
                    'client sent %d bytes md5 %s' % (
                        image_id, where, len(resp.content), got,
                        record['size'], record['md5']))
                return 'wrong data'
            self.history.add(image_id, 'verified via %s' % where)
            return 'verified'
        return self.give_up(image_id, 'not downloaded in time')

    def give_up(self, image_id, why='stuck'):
        image = self.status(image_id)
        status = image['status'] if isinstance(image, dict) else image
        self.history.add(image_id, 'client %d gives up (%s, status %s)' % (
            self.index, why, status))
        self.delete(image_id)
        return '%s: %s' % (why, status)

    def delete(self, image_id):
        for _ in range(5):
            where, resp = self.request('DELETE', '/v2/images/' + image_id)
            self.history.add(image_id, 'delete via %s: %s' % (
                where, describe(resp)))
            if not isinstance(resp, Exception) and resp.status_code in (
                    204, 404):
                return True
            self.pause()
        return False


class Killer(object):
    """Kills one random node at a time, at random instants."""

    def __init__(self, seed, cluster, history, load_end, clients):
        self.rng = random.Random(seed)
        self.clients = clients
        self.cluster = cluster
        self.history = history
        self.load_end = load_end
        self.stop = threading.Event()
        self.errors = []
        self.thread = threading.Thread(target=self.run, daemon=True,
                                       name='kills-killer')

    def run(self):
        try:
            while not self.stop.is_set():
                wait = self.rng.uniform(*KILL_EVERY)
                if time.monotonic() + wait >= self.load_end:
                    return
                if self.stop.wait(wait):
                    return
                node = self.rng.choice(self.cluster.nodes)
                at = self.history.now()
                node.kill()
                kill = {'t': at, 'node': node.name,
                        'in_flight': self.in_flight(node)}
                self.history.add(None, 'SIGKILL %s; in flight: %s' % (
                    node.name, kill['in_flight']))
                started = time.monotonic()
                node.start()
                kill['start'] = time.monotonic() - started
                self.history.kills.append(kill)
        except Exception as exc:
            self.errors.append('%s: %s' % (type(exc).__name__, exc))

    def in_flight(self, node):
        """What the clients were doing as node was killed.

        Their requests (through HAProxy or a node), the images they saw
        importing, and the files in the node's staging dir.
        """
        found = []
        for client in self.clients:
            doing = client.doing
            if doing is not None:
                method, path, entry = doing
                what = {'PUT': 'stage', 'POST': 'import'}.get(method)
                if what and path.startswith('/v2/images/'):
                    found.append('%s %s via %s' % (what, path[11:19], entry))
            if client.importing:
                found.append('importing %s' % client.importing[:8])
        found += ['staged %s' % name[:8] + name[36:]
                  for name in node.staged()]
        return found


# What the nodes log when they recover what a dead process left (the
# figures count them; nothing is asserted of them).
RECOVERED_IMPORT = re.compile(r'The import of image ([0-9a-f-]{36}) .*'
                              r'stopped')
REQUEUED_STAGE = re.compile(r'Image ([0-9a-f-]{36}) is queued again')
REMOVED_STORE_FILE = re.compile(r'Removed \S+/stores/(?:%s)/' % '|'.join(
    glance_demo.OPERATOR_STORES))


def recoveries(nodes):
    """(imports recovered, stages queued again, store files removed)."""
    imports, stages, removed = set(), set(), 0
    for node in nodes:
        for line in node.log_text().splitlines():
            found = RECOVERED_IMPORT.search(line)
            if found:
                imports.add(found.group(1))
            found = REQUEUED_STAGE.search(line)
            if found:
                stages.add(found.group(1))
            if REMOVED_STORE_FILE.search(line):
                removed += 1
    return len(imports), len(stages), removed


def project_images(glance):
    resp = glance.request('GET', '/v2/images?limit=1000')
    assert resp.status_code == 200, message(resp)
    return resp.json()['images']


def orphans(cluster, images):
    """[(store, file, size)] that no image's location names."""
    named = set()
    for image in images:
        url = image.get('direct_url') or ''
        if url.startswith('file://'):
            named.add(os.path.realpath(url[len('file://'):]))
    found = []
    for store, files in cluster.store_files().items():
        top = cluster.store_dir(store)
        for name in files:
            path = os.path.realpath(os.path.join(top, name))
            if path not in named:
                try:
                    size = os.path.getsize(path)
                except OSError:
                    size = -1
                found.append((store, name, size))
    return sorted(found)


# Log lines that say nothing of what became of an image.
NOISE = re.compile(r'version_negotiation|_format_image|"GET /v2/images/'
                   r'[0-9a-f-]{36} HTTP')


def log_lines(cluster, image_id, limit=30):
    """Each node's log lines about an image: the first and last ones."""
    lines = []
    for node in cluster.nodes:
        mine = [line for line in node.log_text().splitlines()
                if image_id in line and not NOISE.search(line)]
        if len(mine) > limit:
            mine = mine[:limit // 2] + ['... %d more ...' % (
                len(mine) - limit)] + mine[-(limit // 2):]
        lines += ['  %s: %s' % (node.name, line[:300]) for line in mine]
    return lines


def report(cluster, history, problems):
    """Write the history of each problem image; the text."""
    out = ['kill at %.1f s of %s (started again in %.1f s); in flight: '
           '%s' % (k['t'], k['node'], k['start'], ', '.join(k['in_flight']))
           for k in history.kills]
    out += ['restart (SIGTERM) at %.1f s of %s; in flight: %s' % (
        t, name, ', '.join(in_flight))
        for t, name, in_flight in history.restarts]
    for image_id, what in problems:
        out.append('== image %s: %s' % (image_id, what))
        out += ['  t=%6.1f %s' % (t, text) for t, text in
                history.of(image_id)]
        out += log_lines(cluster, image_id)
    text = '\n'.join(out) + '\n'
    with open(os.path.join(cluster.base, 'kills-report.txt'), 'w') as f:
        f.write(text)
    return text


@pytest.mark.parametrize('shared,seed', RUNS, ids=[
    '%s-staging-seed%d' % ('shared' if shared else 'per-node', seed)
    for shared, seed in RUNS])
def test_nodes_killed_at_random_instants(request, tmpdir_factory,
                                         file_server, figures, shared,
                                         seed):
    kind = 'shared staging' if shared else 'per-node staging'
    run_started = time.monotonic()
    cluster = make_cluster(request, tmpdir_factory, shared, file_server,
                           options=cluster_options(
                               request.getfixturevalue('glance_tree')),
                           name='kills-%s-seed%d' % (
                               'shared' if shared else 'per-node', seed))
    history = History()
    clients, killer = [], None
    try:
        stale = stale_after(cluster.tree)
        bound = stale + MARGIN
        load_end = time.monotonic() + LOAD
        clients = [Client(i + 1, seed, cluster, history, load_end, stale)
                   for i in range(CLIENTS)]
        killer = Killer(seed, cluster, history, load_end, clients)
        for client in clients:
            client.thread.start()
        killer.thread.start()
        killer.thread.join(LOAD + 2 * 120)
        assert not killer.thread.is_alive(), 'the kills did not stop'
        assert killer.errors == [], 'killing or restarting a node ' \
            'failed: %s' % killer.errors
        # Kills stop; every node is restarted once (together, to save
        # time); then the bound.
        errors = []

        def restart(node):
            try:
                history.restarts.append((history.now(), node.name,
                                         killer.in_flight(node)))
                node.restart()
            except Exception as exc:
                errors.append('%s: %s' % (node.name, exc))

        restarts = [threading.Thread(target=restart, args=(node,),
                                     daemon=True) for node in cluster.nodes]
        for thread in restarts:
            thread.start()
        for thread in restarts:
            thread.join(2 * 120 + 30)
        assert errors == [], 'a node did not start again: %s' % errors
        restarted = time.monotonic()
        end = restarted + bound
        for client in clients:
            client.hard_end = end
        for client in clients:
            client.thread.join(max(0, end - time.monotonic()) + 60)
        alive = [c.index for c in clients if c.thread.is_alive()]
        for client in clients:
            client.stop.set()
        assert alive == [], 'clients %s did not end' % alive
        recover = max([0] + [c.finished_at - restarted for c in clients])

        # What is left once the clients are done.
        glance = Glance(cluster.haproxy.url)
        known = {}
        for client in clients:
            known.update(client.images)
        results = dict((i, r['result']) for i, r in known.items())
        stuck = sorted((i, r) for i, r in results.items()
                       if r and r.startswith(('stuck', 'not downloaded')))
        images = project_images(glance)
        unknown = [(i['id'], i['status']) for i in images
                   if i['id'] not in known]
        not_active = [(i['id'], i['status']) for i in images
                      if i['status'] != 'active']
        wrong = []
        for image in images:
            record = known.get(image['id'])
            if record and image['status'] == 'active' and (
                    image['size'] != record['size'] or
                    image['checksum'] != record['md5']):
                wrong.append(image['id'])
        staged = settled(lambda: dict(
            (path, files) for path, files in cluster.reserved_files().items()
            if files), {}, timeout=15)
        # What a delete or a start-up clean-up removes in the background
        # is given the time settled() gives.
        left = settled(lambda: orphans(cluster, project_images(glance)), [],
                       timeout=15)
        # Each active image's data is all in the store file it names.
        for image in images:
            url = image.get('direct_url') or ''
            if image['status'] == 'active' and url.startswith('file://'):
                try:
                    held = os.path.getsize(url[len('file://'):])
                except OSError:
                    held = None
                if held != image['size']:
                    wrong.append('%s: its store file %s holds %s bytes, '
                                 'not %d' % (image['id'], url, held,
                                             image['size']))
        failures = [f for c in clients for f in c.failures]
        counts = dict((k, sum(c.counts[k] for c in clients))
                      for k in clients[0].counts)
        verified = sum(1 for r in results.values() if r == 'verified')
        recovered = recoveries(cluster.nodes)
        figure = (
            'cluster kills (%s, seed %d): %d clients x %d-%d MiB, %d s of '
            'load: %d images, %d verified, %d stuck (%s), %d ended '
            '"killed"; %d '
            'kills (%s); the nodes logged %d imports recovered, %d stages '
            'queued again, %d store files removed; orphans in the stores '
            '%d%s; staging/tasks files '
            'left %d; not active at the end %d; recovered %.1f s after '
            'the restarts (bound %d s, stale %d s%s); clients saw %d '
            'connection errors, %d 5xx, %d 409, %d cut downloads; run '
            '%.0f s (set-up %.0f s)' % (
                kind, seed, CLIENTS, SIZES_MIB[0], SIZES_MIB[1], LOAD,
                len(known), verified, len(stuck),
                ', '.join(sorted(set(r.split(': ')[-1] for _i, r in stuck)))
                or '-',
                sum(1 for r in results.values() if r and
                    r.startswith('killed')),
                len(history.kills), ' '.join(
                    '%s@%.0fs[%s]' % (k['node'], k['t'], ','.join(
                        sorted(set(f.split()[0] for f in k['in_flight']))))
                    for k in history.kills),
                recovered[0], recovered[1], recovered[2],
                len(left), (' (%s)' % ', '.join(
                    '%s/%s %.1f MiB' % (s, n[:8], size / 2.0 ** 20)
                    for s, n, size in left)) if left else '',
                sum(len(f) for f in staged.values()), len(not_active),
                recover, bound, stale,
                (' by %s' % stale_option(cluster.tree)
                 if stale_option(cluster.tree) else ''),
                counts['conn'], counts['e5xx'],
                counts['e409'], counts['cut'], time.monotonic() - run_started,
                cluster.setup_seconds))
        figures.append(figure)
        problems = [(i, r) for i, r in stuck]
        problems += [(n.split('.')[0],
                      'orphan %s/%s, %d bytes' % (s, n, size))
                     for s, n, size in left]
        problems += [(f.split('/')[-1].split('.')[0], 'left in %s'
                      % path) for path, files in staged.items()
                     for f in files]
        detail = report(cluster, history, problems)
        reasons = []
        if stuck:
            reasons.append('%d images no careful client could bring to '
                           'active within %d s of the restarts: %s' % (
                               len(stuck), bound, stuck))
        if left:
            reasons.append('%d files in the operator stores that no image '
                           'location names: %s' % (len(left), left))
        if staged:
            reasons.append('the staging/tasks dirs still hold %s' % staged)
        if not_active or unknown:
            reasons.append('images neither active nor deleted at the end: '
                           '%s; images no client knows of: %s' % (
                               not_active, unknown))
        if wrong or failures:
            reasons.append('wrong data: %s %s' % (wrong, failures))
        assert reasons == [], '%s\n%s\n%s' % (
            figure, '\n'.join(reasons), detail[:6000])
    finally:
        for client in clients:
            client.stop.set()
        if killer is not None:
            killer.stop.set()
            killer.thread.join(150)
        for client in clients:
            client.thread.join(REQUEST_TIMEOUT + 5)
        cluster.stop()
