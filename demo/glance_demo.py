"""Configure, start and stop the demo's glance-api.

Shared by ``demo/demo.py`` (run with the Python that has Glance) and the
acceptance tests (run with build/venv's Python, which has no Glance):
standard library only, and Glance itself is only ever run as a separate
process with the Python given.

The configuration is self-contained under one base directory: a SQLite
database, no Keystone (the ``trusted-auth`` paste flavor: the identity
comes in request headers), two operator file stores, ``fast`` (the
default) and ``cheap``, and the sections of both reserved stores.
"""

import collections
import http.server
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

OPERATOR_STORES = ('fast', 'cheap')
DEFAULT_STORE = 'fast'
STAGING_STORE = 'os_glance_staging_store'
TASKS_STORE = 'os_glance_tasks_store'
RESERVED_STORES = (STAGING_STORE, TASKS_STORE)
DESCRIPTIONS = {
    'fast': 'Fast file store (the default)',
    'cheap': 'Cheap file store',
}

# glance-api exits with this code when the stores break a reserved-store
# rule (glance.cmd.api.ERROR_CODE_MAP).
EXIT_RESERVED_STORE_CONFIG = 6

# The identity glance-api trusts with the trusted-auth flavor.
IDENTITY_HEADERS = {
    'X-Identity-Status': 'Confirmed',
    'X-User-Id': 'demo-user',
    'X-Tenant-Id': 'demo-project',
    'X-Roles': 'member',
}


class DemoError(Exception):
    """Set-up or a process went wrong; the message says what and where."""


def free_port():
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class Layout(object):
    """The files and directories of one glance-api under a base dir."""

    def __init__(self, base):
        self.base = os.path.abspath(base)
        self.etc = os.path.join(self.base, 'etc')
        self.conf = os.path.join(self.etc, 'glance-api.conf')
        self.paste = os.path.join(self.etc, 'glance-api-paste.ini')
        self.policy = os.path.join(self.etc, 'policy.json')
        self.db = os.path.join(self.base, 'glance.sqlite')
        self.log = os.path.join(self.base, 'glance-api.log')
        self.output = os.path.join(self.base, 'glance-api.out')
        self.web = os.path.join(self.base, 'web')
        self.datadirs = collections.OrderedDict(
            (name, os.path.join(self.base, 'stores', name))
            for name in OPERATOR_STORES + RESERVED_STORES)


def config_sections(layout, port, web_port=None):
    """Return the glance-api.conf contents as {section: {option: value}}.

    Callers may change the result before writing it, e.g. to provoke a
    start-up refusal.
    """
    backends = ', '.join('%s:file' % name for name in OPERATOR_STORES)
    sections = collections.OrderedDict()
    sections['DEFAULT'] = collections.OrderedDict([
        ('bind_host', '127.0.0.1'),
        ('bind_port', str(port)),
        ('workers', '0'),
        ('log_file', layout.log),
        ('debug', 'false'),
        ('enable_v1_api', 'false'),
        ('enabled_backends', backends),
        ('enabled_import_methods', '[glance-direct,web-download]'),
        ('image_size_cap', str(4 << 30)),
    ])
    sections['database'] = {'connection': 'sqlite:///' + layout.db}
    sections['paste_deploy'] = collections.OrderedDict([
        ('flavor', 'trusted-auth'), ('config_file', layout.paste)])
    sections['oslo_policy'] = {'policy_file': layout.policy}
    sections['glance_store'] = {'default_backend': DEFAULT_STORE}
    for name, path in layout.datadirs.items():
        sections[name] = collections.OrderedDict(
            [('filesystem_store_datadir', path)])
        if name in DESCRIPTIONS:
            sections[name]['store_description'] = DESCRIPTIONS[name]
    sections['import_filtering_opts'] = collections.OrderedDict([
        ('allowed_schemes', '[http]'),
        ('allowed_hosts', '[127.0.0.1]'),
        ('allowed_ports', '[%d]' % web_port if web_port else '[]'),
    ])
    return sections


def render_config(sections):
    """The text of an ini file from {section: {option: value}}."""
    parts = []
    for section, options in sections.items():
        parts.append('[%s]' % section)
        parts.extend('%s = %s' % item for item in options.items())
        parts.append('')
    return '\n'.join(parts)


def write_config(layout, sections, tree):
    """Write glance-api.conf; take paste and policy files from the tree.

    The base directory is created afresh: whatever was in it goes.
    """
    if os.path.isdir(layout.base):
        shutil.rmtree(layout.base)
    os.makedirs(layout.etc)
    os.makedirs(layout.web)
    for name in ('glance-api-paste.ini', 'policy.json'):
        src = os.path.join(tree, 'etc', name)
        if not os.path.exists(src):
            raise DemoError('%s is missing: is %s a Glance tree?'
                            % (src, tree))
        shutil.copy(src, os.path.join(layout.etc, name))
    with open(layout.conf, 'w') as f:
        f.write(render_config(sections))


def db_sync(python, layout, timeout=300):
    """Create the SQLite database with glance-manage db_sync."""
    cmd = [python, '-m', 'glance.cmd.manage', '--config-file', layout.conf,
           'db_sync']
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout,
                              universal_newlines=True, cwd=layout.base)
    except subprocess.TimeoutExpired:
        raise DemoError('glance-manage db_sync did not finish in %d s'
                        % timeout)
    if proc.returncode:
        raise DemoError('glance-manage db_sync failed (exit %d):\n%s'
                        % (proc.returncode, proc.stdout.strip()))


def prepared_api(python, tree, base, web_port=None, **defaults):
    """A glance-api configured as the demo's under base, not started yet.

    Its database is made; defaults are more [DEFAULT] options.
    """
    layout = Layout(base)
    sections = config_sections(layout, free_port(), web_port)
    sections['DEFAULT'].update(defaults)
    write_config(layout, sections, tree)
    db_sync(python, layout)
    return GlanceApi(python, layout, int(sections['DEFAULT']['bind_port']))


def api_command(python, layout):
    """The command that runs glance-api with the layout's configuration."""
    return [python, '-m', 'glance.cmd.api', '--config-file', layout.conf]


def tail(path, lines=30):
    """The last lines of a text file, or '' if it does not exist."""
    try:
        with open(path, errors='replace') as f:
            return ''.join(f.readlines()[-lines:])
    except FileNotFoundError:
        return ''


class GlanceApi(object):
    """A glance-api process on 127.0.0.1, started and stopped by us."""

    # What start() polls until it answers 200, and how often.
    ready_path = '/healthcheck'
    poll_interval = 0.25

    def __init__(self, python, layout, port, wrapper=()):
        """wrapper: a command prefix glance-api is run with, if any."""
        self.python = python
        self.layout = layout
        self.port = port
        self.url = 'http://127.0.0.1:%d' % port
        self.wrapper = list(wrapper)
        self.proc = None

    def start(self, timeout=120):
        """Start glance-api and wait until it answers its health check."""
        with open(self.layout.output, 'w') as out:
            # A session of its own: stop() ends the whole process group.
            self.proc = subprocess.Popen(
                self.wrapper + api_command(self.python, self.layout),
                stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.layout.base, start_new_session=True)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise DemoError(
                    'glance-api exited with code %d while starting; its '
                    'output (%s):\n%s\nits log (%s):\n%s' % (
                        rc, self.layout.output, tail(self.layout.output),
                        self.layout.log, tail(self.layout.log)))
            if self.healthy():
                return
            if time.monotonic() > deadline:
                raise DemoError(
                    'glance-api did not answer on %s within %d s; its log '
                    '(%s):\n%s' % (self.url, timeout, self.layout.log,
                                   tail(self.layout.log)))
            time.sleep(self.poll_interval)

    def healthy(self):
        try:
            with urllib.request.urlopen(self.url + self.ready_path,
                                        timeout=5) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout=20):
        """Stop glance-api (TERM, then KILL); return its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            stop_group(self.proc, timeout)
        return self.proc.wait()


def stop_group(proc, timeout):
    """End a process started with start_new_session, and its group."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            continue


def run_api_until_exit(python, layout, timeout=60, wrapper=()):
    """Run glance-api expecting it to refuse to start.

    :param wrapper: a command prefix to run glance-api with, if any
    :returns: (exit code, what it wrote to stdout and stderr)
    :raises DemoError: it was still running after timeout seconds (it is
        stopped first)
    """
    proc = subprocess.Popen(list(wrapper) + api_command(python, layout),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, cwd=layout.base,
                            universal_newlines=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_group(proc, 10)
        proc.communicate()
        raise DemoError('glance-api was still running after %d s; it '
                        'should have refused to start' % timeout)
    return proc.returncode, output


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files without logging every request to stderr."""

    def log_message(self, format, *args):
        pass


class FileServer(object):
    """A static HTTP server on 127.0.0.1 for the web-download method."""

    def __init__(self, directory, port=0):
        self.directory = directory
        handler = _partial_handler(directory)
        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', port),
                                                     handler)
        self.port = self.httpd.server_address[1]
        self.thread = None

    def url(self, name):
        return 'http://127.0.0.1:%d/%s' % (self.port, name)

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       name='demo-file-server', daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.thread is not None:
            self.httpd.shutdown()
            self.thread.join(10)
            self.thread = None
        self.httpd.server_close()


def _partial_handler(directory):
    """A request handler class that serves one directory."""
    class Handler(_QuietHandler):
        def __init__(self, *args, **kwargs):
            super(Handler, self).__init__(*args, directory=directory,
                                          **kwargs)
    return Handler


def list_files(top):
    """Every file below top, as paths relative to it, sorted."""
    found = []
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            found.append(os.path.relpath(os.path.join(dirpath, name), top))
    return sorted(found)
