"""Three glance-api nodes behind HAProxy, for the cluster tests.

./series test cluster runs these tests with build/venv's Python and sets,
besides GLANCE_PYTHON and GLANCE_TREE (see ../conftest.py):

* GLANCE_CLUSTER_DB_URL: an account of a real database server that may
  create databases (PostgreSQL or MySQL/MariaDB URL, SQLAlchemy's
  form); each cluster gets a database of its own, made by
  ``glance-manage db_sync``;
* GLANCE_HAPROXY: the haproxy program.

Without them every test fails, saying so: nothing is skipped.

A cluster is three patched glance-api nodes on 127.0.0.1, each with
``workers = 2``, the demo's configuration (the trusted-auth paste
flavor, the file stores ``fast`` and ``cheap`` and both reserved
stores) and ``[DEFAULT] worker_self_reference_url`` naming its own
port.  They share the database and the operator stores' directories
(the shared storage of a deployment); each has its own tasks store and,
unless the cluster is made with a shared staging directory, its own
staging store.  HAProxy balances them round-robin.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import uuid

import glance_demo
from glance_http import Glance

STAGING = glance_demo.STAGING_STORE
TASKS = glance_demo.TASKS_STORE
NODES = 3
WORKERS = 2
WAIT = 60               # seconds for a process to start or stop

# What a node logs when it hands an import to the node holding the
# staged data (counted for the figures).
FORWARD_PATTERN = re.compile(r'Passing the import of image \S+ to ')


def run_sql(python, url, statements):
    """Run SQL statements on url with SQLAlchemy in Glance's Python."""
    code = ('import sys, sqlalchemy\n'
            'engine = sqlalchemy.create_engine(sys.argv[1], '
            'isolation_level="AUTOCOMMIT")\n'
            'with engine.connect() as conn:\n'
            '    for statement in sys.argv[2:]:\n'
            '        conn.execute(statement)\n')
    proc = subprocess.run([python, '-c', code, url] + list(statements),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=WAIT)
    if proc.returncode:
        raise glance_demo.DemoError('SQL on %s failed: %s\n%s' % (
            url, statements, proc.stdout.strip()))


def database_url(admin_url, name):
    """admin_url with its database replaced by name."""
    parts = urllib.parse.urlsplit(admin_url)
    query = parts.query
    if parts.scheme.startswith('mysql') and 'charset' not in query:
        query = 'charset=utf8'
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, '/' + name,
                                    query, ''))


def wait_port(port, proc, what, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise glance_demo.DemoError('%s exited with code %d while '
                                        'starting' % (what, proc.returncode))
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=1):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise glance_demo.DemoError('%s did not listen on port %d '
                                        'within %d s' % (what, port, timeout))
        time.sleep(0.1)


class Node(object):
    """One glance-api node of the cluster."""

    def __init__(self, cluster, index):
        self.cluster = cluster
        self.index = index
        self.name = 'node%d' % index
        self.layout = glance_demo.Layout(os.path.join(cluster.base,
                                                      self.name))
        self.port = glance_demo.free_port()
        self.url = 'http://127.0.0.1:%d' % self.port
        self.server = None

    @property
    def staging(self):
        return self.cluster.staging_dir(self)

    @property
    def log(self):
        return self.layout.log

    def configure(self, web_port):
        c = self.cluster
        sections = glance_demo.config_sections(self.layout, self.port,
                                               web_port)
        sections['DEFAULT'].update([
            ('workers', str(WORKERS)),
            ('worker_self_reference_url', self.url),
            ('debug', 'true')])
        sections['database'] = {'connection': c.db_url}
        for store in glance_demo.OPERATOR_STORES:
            sections[store]['filesystem_store_datadir'] = os.path.join(
                c.base, 'stores', store)
        sections[STAGING]['filesystem_store_datadir'] = self.staging
        for section, options in c.options.items():
            sections.setdefault(section, {}).update(options)
        glance_demo.write_config(self.layout, sections, c.tree)

    def start(self):
        self.server = glance_demo.GlanceApi(self.cluster.python,
                                            self.layout, self.port)
        self.server.start(timeout=WAIT * 2)

    def stop(self):
        """SIGTERM to the node's process group; its exit code."""
        if self.server is None:
            return None
        code = self.server.stop()
        self.server = None
        return code

    def kill(self):
        """SIGKILL to the node's whole process group."""
        os.killpg(self.server.proc.pid, signal.SIGKILL)
        self.server.proc.wait(WAIT)
        self.server = None

    @property
    def up(self):
        return self.server is not None

    def restart(self):
        """Stop the node (SIGTERM) and start it again."""
        self.stop()
        self.start()

    @property
    def tasks(self):
        return self.layout.datadirs[TASKS]

    def staged(self):
        return glance_demo.list_files(self.staging)

    def log_text(self):
        try:
            with open(self.log, errors='replace') as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def client(self):
        return Glance(self.url)


class HAProxy(object):
    """HAProxy on 127.0.0.1, round-robin over the nodes."""

    def __init__(self, program, base, nodes):
        self.program = program
        self.base = base
        self.nodes = nodes
        self.port = glance_demo.free_port()
        self.url = 'http://127.0.0.1:%d' % self.port
        self.conf = os.path.join(base, 'haproxy.cfg')
        self.output = os.path.join(base, 'haproxy.log')
        self.proc = None

    def configure(self):
        servers = ''.join(
            '    server %s 127.0.0.1:%d check inter 500ms fall 2 rise 1\n'
            % (node.name, node.port) for node in self.nodes)
        with open(self.conf, 'w') as f:
            f.write(
                'global\n'
                '    maxconn 512\n'
                '    log stdout format raw local0\n'
                'defaults\n'
                '    mode http\n'
                '    log global\n'
                '    option httplog\n'
                '    retries 3\n'
                '    option redispatch\n'
                '    timeout connect 5s\n'
                '    timeout client 300s\n'
                '    timeout server 300s\n'
                'frontend glance\n'
                '    bind 127.0.0.1:%d\n'
                '    default_backend nodes\n'
                'backend nodes\n'
                '    balance roundrobin\n'
                '    option httpchk GET /healthcheck\n'
                '%s' % (self.port, servers))

    def start(self):
        self.configure()
        check = subprocess.run([self.program, '-c', '-f', self.conf],
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT,
                               universal_newlines=True)
        if check.returncode:
            raise glance_demo.DemoError('haproxy refuses %s:\n%s' % (
                self.conf, check.stdout))
        with open(self.output, 'w') as out:
            self.proc = subprocess.Popen(
                [self.program, '-db', '-f', self.conf], stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        wait_port(self.port, self.proc, 'haproxy')
        deadline = time.monotonic() + WAIT
        glance = Glance(self.url)
        while glance.request('GET', '/healthcheck').status_code != 200:
            if time.monotonic() > deadline:
                raise glance_demo.DemoError('no node answers through '
                                            'haproxy within %d s' % WAIT)
            time.sleep(0.2)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            glance_demo.stop_group(self.proc, 10)
        self.proc = None

    def served_by(self):
        """{node name: requests HAProxy passed to it} from its log."""
        counts = dict((node.name, 0) for node in self.nodes)
        try:
            with open(self.output, errors='replace') as f:
                for line in f:
                    match = re.search(r' nodes/(node\d+) ', line)
                    if match:
                        counts[match.group(1)] += 1
        except FileNotFoundError:
            pass
        return counts


class Cluster(object):
    """Three nodes, their database and HAProxy; see the module doc."""

    def __init__(self, python, tree, base, admin_url, haproxy,
                 shared_staging, web_port, options=None):
        """A cluster not started yet.

        options: more glance-api.conf options of every node, as
        {section: {option: value}}.
        """
        self.python = python
        self.tree = tree
        self.base = base
        self.admin_url = admin_url
        self.shared_staging = shared_staging
        self.db_name = 'glance_cluster_%s' % uuid.uuid4().hex[:12]
        self.db_url = database_url(admin_url, self.db_name)
        self.web_port = web_port
        self.options = options or {}
        self.nodes = [Node(self, i + 1) for i in range(NODES)]
        self.haproxy = HAProxy(haproxy, base, self.nodes)
        self.setup_seconds = None

    def staging_dir(self, node):
        if self.shared_staging:
            return os.path.join(self.base, 'shared-staging')
        return node.layout.datadirs[STAGING]

    def start(self):
        started = time.monotonic()
        if os.path.isdir(self.base):
            shutil.rmtree(self.base)
        os.makedirs(self.base)
        run_sql(self.python, self.admin_url,
                ['CREATE DATABASE %s' % self.db_name])
        for node in self.nodes:
            node.configure(self.web_port)
        glance_demo.db_sync(self.python, self.nodes[0].layout)
        # On 2 cores, one node at a time.
        for node in self.nodes:
            node.start()
        self.haproxy.start()
        self.setup_seconds = time.monotonic() - started

    def stop(self):
        self.haproxy.stop()
        for node in self.nodes:
            node.stop()
        try:
            run_sql(self.python, self.admin_url,
                    ['DROP DATABASE %s' % self.db_name])
        except glance_demo.DemoError:
            pass

    def client(self):
        """A client of the cluster through HAProxy."""
        return Glance(self.haproxy.url)

    def staged(self):
        """{staging dir: its files} of every node."""
        return dict((node.staging, node.staged()) for node in self.nodes)

    def nothing_staged(self):
        return all(files == [] for files in self.staged().values())

    def staged_of(self, image_ids):
        """[(node, file)] of the images image_ids in any staging dir."""
        found = []
        for node in self.nodes:
            for name in node.staged():
                if any(name.startswith(i) for i in image_ids):
                    found.append((node.name, name))
        return sorted(set(found))

    def store_dir(self, store):
        """The directory of an operator store, shared by the nodes."""
        return os.path.join(self.base, 'stores', store)

    def store_files(self):
        """{operator store: its files}, the nodes' shared stores."""
        return dict((store, glance_demo.list_files(self.store_dir(store)))
                    for store in glance_demo.OPERATOR_STORES)

    def reserved_files(self):
        """{directory: its files} of every staging and tasks dir."""
        dirs = []
        for node in self.nodes:
            for path in (node.staging, node.tasks):
                if path not in dirs:
                    dirs.append(path)
        return dict((path, glance_demo.list_files(path)) for path in dirs)

    def delete_all(self, image_ids):
        """Delete the images that are still there (test clean-up)."""
        glance = Glance(self.nodes[0].url) if self.nodes[0].server \
            else self.client()
        for image_id in image_ids:
            glance.delete(image_id)

    def forwarded(self):
        """Log lines of forwarded imports, all nodes together."""
        return sum(len([line for line in node.log_text().splitlines()
                        if FORWARD_PATTERN.search(line)])
                   for node in self.nodes)


def make_cluster(request, tmpdir_factory, shared_staging, file_server,
                 options=None, name=None):
    python = request.getfixturevalue('glance_python')
    tree = request.getfixturevalue('glance_tree')
    admin_url = request.getfixturevalue('db_admin_url')
    program = request.getfixturevalue('haproxy')
    if name is None:
        name = 'cluster-shared' if shared_staging else 'cluster-per-node'
    cluster = Cluster(python, tree, str(tmpdir_factory.mktemp(name)),
                      admin_url, program, shared_staging, file_server.port,
                      options)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster
