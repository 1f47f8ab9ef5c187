"""The forward job: what the series leaves, taken up by Glance 19.0.4.

Run by ``./series test forward`` with the series' Glance Python (the
patched tree, SQLAlchemy, psycopg2 and requests).  For SQLite, then
PostgreSQL:

1. the series' ``glance-manage db_sync`` makes a database and the
   patched glance-api, configured as the demo's (two file stores, both
   reserved stores, ``worker_self_reference_url``), uses it: an image
   uploaded, one imported with glance-direct, one staged and not
   imported, one whose stage is cut off by SIGKILL to glance-api's
   process group;
2. the database is copied as the series left it, for the schema check
   and (SQLite) for the rolling upgrade: Train's ``glance-manage db
   expand``, ``db migrate`` and ``db contract`` on that copy; Train's
   ``db_sync`` upgrades the database the configuration names;
3. Train's glance-api starts with the series' glance-api.conf and paste
   file as they are, lists the operator's stores only, and imports the
   image the series staged;
4. the schema the series left is compared with the one 18.0.1's own
   ``db_sync`` makes: tables, columns, indexes, constraints, foreign keys
   and the ``alembic_version`` rows.

Each check prints ``ok`` or ``FAIL``; one that cannot run because one it
needs failed is a failure too.  The last line is ``forward: N passed, N
failed``.  Every process started is stopped, also on failure.
"""

import argparse
import difflib
import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for folder in ('demo', 'acceptance', os.path.join('acceptance', 'cluster')):
    sys.path.insert(0, os.path.join(ROOT, folder))

import sqlalchemy  # noqa: E402

import glance_cluster  # noqa: E402
import glance_demo  # noqa: E402
import glance_http  # noqa: E402

WAIT = 60                   # seconds for a process or a file to get there
UPLOADED_SIZE = 4 << 20
DIRECT_SIZE = 8 << 20
STAGED_SIZE = 16 << 20
KILLED_SIZE = 256 << 20     # what the slow client would send in all
KILLED_AT = 8 << 20         # what it sends before it waits
CHUNK = 1 << 20
STAGING = glance_demo.STAGING_STORE
# Every glance-api started, stopped at the end whatever happened.
STARTED = []


class Problem(Exception):
    """A check found something wrong; the message says what."""


def expect(ok, text):
    if not ok:
        raise Problem(text)


class Checks(object):
    """Runs and counts the checks of one database, by key."""

    def __init__(self, backend):
        self.backend = backend
        self.passed = 0
        self.failed = []
        self.ok = set()
        self.figures = []

    def section(self, text):
        print('\n== %s: %s' % (self.backend, text), flush=True)

    def check(self, key, text, function, needs=()):
        """Run function(); it passes unless it raises.  What it returns
        (a line of figures, or None) is printed under it."""
        missing = [need for need in needs if need not in self.ok]
        started = time.monotonic()
        if missing:
            ok, detail = False, 'not run: %s did not pass' % ', '.join(
                missing)
        else:
            try:
                detail, ok = function(), True
            except Exception as e:
                detail, ok = '%s%s' % (
                    '' if isinstance(e, (Problem, AssertionError,
                                         glance_demo.DemoError))
                    else type(e).__name__ + ': ', e), False
        took = time.monotonic() - started
        print('  %s %s  (%.1f s)' % ('ok  ' if ok else 'FAIL', text, took),
              flush=True)
        for line in str(detail or '').splitlines():
            print('         ' + line, flush=True)
        if ok:
            self.passed += 1
            self.ok.add(key)
        else:
            self.failed.append('%s: %s' % (self.backend, text))
        return ok


def tail_lines(text, lines=2):
    return '\n'.join(text.strip().splitlines()[-lines:])


def manage(python, conf, *command):
    """Run glance-manage with the configuration file conf; return the
    seconds it took, or raise Problem with the end of its output."""
    started = time.monotonic()
    cmd = [python, '-m', 'glance.cmd.manage', '--config-file', conf]
    cmd += list(command)
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=5 * WAIT,
                              universal_newlines=True,
                              cwd=os.path.dirname(conf))
    except subprocess.TimeoutExpired:
        raise Problem('glance-manage %s did not end within %d s'
                      % (' '.join(command), 5 * WAIT))
    if proc.returncode:
        raise Problem('glance-manage %s exited %d:\n%s' % (
            ' '.join(command), proc.returncode, tail_lines(proc.stdout)))
    return time.monotonic() - started


def database_conf(path, url):
    """Write a configuration file that names only a database."""
    with open(path, 'w') as f:
        f.write(glance_demo.render_config({'database': {'connection': url}}))
    return path


class SQLite(object):
    """Databases as files of the base directory."""

    name = 'sqlite'

    def __init__(self, base):
        self.base = base

    def path(self, db):
        return os.path.join(self.base, db + '.sqlite')

    def url(self, db):
        return 'sqlite:///' + self.path(db)

    def create(self, db):
        pass            # db_sync makes the file

    def copy(self, source, target):
        shutil.copyfile(self.path(source), self.path(target))

    def drop(self, dbs):
        pass            # the base directory goes at the next run


class PostgreSQL(object):
    """Databases forward_<name> on a server that may create them."""

    name = 'postgresql'

    def __init__(self, admin_url):
        self.admin_url = admin_url

    def url(self, db):
        if not self.admin_url:
            raise Problem('no PostgreSQL server: ./series gives one with '
                          '--postgresql-url')
        return glance_cluster.database_url(self.admin_url, 'forward_' + db)

    def sql(self, *statements):
        self.url('')
        glance_cluster.run_sql(sys.executable, self.admin_url, statements)

    def create(self, db):
        self.sql('DROP DATABASE IF EXISTS forward_%s' % db,
                 'CREATE DATABASE forward_%s' % db)

    def copy(self, source, target):
        """CREATE DATABASE ... TEMPLATE: the sessions of a glance-api
        killed a moment ago may not have ended yet."""
        deadline = time.monotonic() + WAIT
        while True:
            try:
                self.sql(
                    'SELECT pg_terminate_backend(pid) FROM pg_stat_activity '
                    "WHERE datname = 'forward_%s' AND pid <> "
                    'pg_backend_pid()' % source,
                    'DROP DATABASE IF EXISTS forward_%s' % target,
                    'CREATE DATABASE forward_%s TEMPLATE forward_%s'
                    % (target, source))
                return
            except glance_demo.DemoError as e:
                if ('being accessed by other users' not in str(e) or
                        time.monotonic() > deadline):
                    raise
                time.sleep(0.5)

    def drop(self, dbs):
        if not self.admin_url:
            return
        for db in dbs:
            self.sql('SELECT pg_terminate_backend(pid) FROM pg_stat_activity '
                     "WHERE datname = 'forward_%s' AND pid <> "
                     'pg_backend_pid()' % db,
                     'DROP DATABASE IF EXISTS forward_%s' % db)


def schema(url):
    """(lines describing every table, the alembic_version rows)."""
    engine = sqlalchemy.create_engine(url)
    try:
        inspector = sqlalchemy.inspect(engine)
        tables = sorted(inspector.get_table_names())
        lines = []
        for table in tables:
            lines.append('table %s' % table)
            for col in inspector.get_columns(table):
                lines.append('  column %s %s %s default %s' % (
                    col['name'], col['type'].compile(dialect=engine.dialect),
                    'NULL' if col['nullable'] else 'NOT NULL',
                    col.get('default')))
            pk = inspector.get_pk_constraint(table)
            lines.append('  primary key %s (%s)' % (
                pk.get('name'), ', '.join(pk['constrained_columns'])))
            for index in sorted(inspector.get_indexes(table),
                                key=lambda i: i['name'] or ''):
                lines.append('  %sindex %s (%s)' % (
                    'unique ' if index['unique'] else '', index['name'],
                    ', '.join(index['column_names'])))
            for unique in sorted(inspector.get_unique_constraints(table),
                                 key=lambda u: u['name'] or ''):
                lines.append('  unique constraint %s (%s)' % (
                    unique['name'], ', '.join(unique['column_names'])))
            for fk in sorted(inspector.get_foreign_keys(table),
                             key=lambda f: (f['name'] or '',
                                            f['constrained_columns'])):
                lines.append('  foreign key %s (%s) -> %s (%s)' % (
                    fk['name'], ', '.join(fk['constrained_columns']),
                    fk['referred_table'], ', '.join(fk['referred_columns'])))
        versions = []
        if 'alembic_version' in tables:
            versions = sorted(row[0] for row in engine.execute(
                'SELECT version_num FROM alembic_version'))
        return lines, versions
    finally:
        engine.dispose()


def same(expected, got, expected_name, got_name, limit=60):
    """Raise Problem with a unified diff unless the lists are equal."""
    if expected == got:
        return
    diff = list(difflib.unified_diff(expected, got, expected_name, got_name,
                                     lineterm='', n=1))
    if len(diff) > limit:
        diff = diff[:limit] + ['... (%d more lines)' % (len(diff) - limit)]
    raise Problem('they differ:\n' + '\n'.join(diff))


class SlowStage(object):
    """A stage whose client sends KILLED_AT bytes, then waits."""

    def __init__(self, glance, image_id):
        self.glance = glance
        self.image_id = image_id
        self.sent = 0
        self.waiting = threading.Event()
        self.release = threading.Event()
        self.outcome = {}
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _body(self):
        block = os.urandom(CHUNK)
        while self.sent < KILLED_SIZE:
            if self.sent >= KILLED_AT:
                self.waiting.set()
                if self.release.wait(WAIT):
                    return
            self.sent += len(block)
            yield block

    def _run(self):
        try:
            self.outcome['response'] = self.glance.stage(self.image_id,
                                                         self._body())
        except Exception as e:      # the connection broke: expected
            self.outcome['error'] = e

    def start(self):
        self.thread.start()

    def finish(self):
        self.release.set()
        self.thread.join(WAIT)


def kill_group(api):
    """SIGKILL to glance-api's whole process group; its exit code."""
    os.killpg(api.proc.pid, signal.SIGKILL)
    return api.proc.wait(WAIT)


def mib(size):
    return '%.1f MiB' % (size / float(1 << 20))


class Run(object):
    """The series, then Train, on one database: its checks in order."""

    def __init__(self, backend, args):
        self.backend = backend
        self.args = args
        self.checks = Checks(backend.name)
        self.layout = glance_demo.Layout(os.path.join(args.build_dir,
                                                      backend.name))
        self.staging = self.layout.datadirs[STAGING]
        port = glance_demo.free_port()
        # Both on the port of the series' configuration, one after the
        # other.
        self.series_api = glance_demo.GlanceApi(args.series_python,
                                                self.layout, port)
        self.train_api = glance_demo.GlanceApi(args.train_python,
                                               self.layout, port)
        STARTED.extend([self.series_api, self.train_api])
        self.series = glance_http.Glance(self.series_api.url)
        self.train = glance_http.Glance(self.train_api.url)
        self.images = {}        # what: (image id, md5 of its data)
        self.schemas = {}       # database: (lines, alembic_version rows)
        self.rolling = backend.name == 'sqlite'

    def all(self):
        check, section = self.checks.check, self.checks.section
        section('the series makes a database and uses it')
        check('made', 'the series\' glance-manage db_sync makes the '
              'database', self.make)
        check('series', 'the series\' glance-api starts (stores fast and '
              'cheap, both reserved stores, worker_self_reference_url)',
              lambda: self.start(self.series_api), needs=['made'])
        check('uploaded', 'an image uploaded is active', self.upload,
              needs=['series'])
        check('direct', 'an image imported with glance-direct is active',
              self.direct, needs=['series'])
        check('staged', 'an image staged and not imported stays '
              'uploading, its data in the staging store', self.staged,
              needs=['series'])
        check('killed', 'an image mid-stage when glance-api\'s process '
              'group is killed with SIGKILL', self.killed, needs=['series'])
        section('the series\' glance-api is stopped (exit code %s); its '
                'log kept as glance-api-series.log' % self.stop_series())

        section('copies of the database; Train\'s glance-manage')
        check('copied', 'the database is copied (%s)' % (
            'file copies' if self.rolling else
            'CREATE DATABASE ... TEMPLATE'), self.copy, needs=['made'])
        check('synced', 'Train\'s glance-manage db_sync upgrades the '
              'database the series\' glance-api.conf names', self.sync,
              needs=['copied'])
        need = 'copied'
        phases = ('expand', 'migrate', 'contract') if self.rolling else ()
        for phase in phases:
            check(phase, 'Train\'s glance-manage db %s on another copy'
                  % phase, functools.partial(self.rolling_phase, phase),
                  needs=[need])
            need = phase

        section('Train\'s glance-api with the series\' glance-api.conf and '
                'paste file as they are')
        # Started whether Train's db_sync passed or not (that failure is
        # counted): what follows tells whether Train takes up the data.
        check('train', 'Train\'s glance-api starts',
              lambda: self.start(self.train_api), needs=['copied'])
        check('stores', 'GET /v2/info/stores lists fast and cheap, no '
              'os_glance_ store', self.stores, needs=['train'])
        check('shown', 'the series\' images as Train shows them (uploaded '
              'and imported active, staged uploading, killed not active), '
              'the uploaded one downloads', self.shown,
              needs=['train', 'uploaded', 'direct', 'staged', 'killed'])
        check('imported', 'Train imports the image the series staged '
              '(glance-direct), active with the md5 of the staged bytes',
              self.import_staged, needs=['train', 'staged'])
        check('unstaged', 'the staging store holds nothing of that image '
              'any more', self.unstaged, needs=['imported'])
        section('Train\'s glance-api is stopped (exit code %s)'
                % self.train_api.stop())

        section('the schema the series leaves, against 18.0.1\'s')
        check('pristine', 'Glance 18.0.1\'s own glance-manage db_sync '
              'makes a database to compare with', self.pristine,
              needs=['copied'])
        check('tables', 'the same tables, columns, indexes, constraints '
              'and foreign keys', lambda: self.same(0), needs=['pristine'])
        check('versions', 'the same alembic_version rows (%s)' % ', '.join(
            self.schemas.get('pristine', ((), ['?']))[1]),
            lambda: self.same(1), needs=['pristine'])
        try:
            self.backend.drop(('series', 'after_use', 'pristine'))
        except Exception as e:
            print('  (could not drop the databases: %s)' % e)
        return self.checks

    # -- the series

    def make(self):
        layout = self.layout
        sections = glance_demo.config_sections(layout, self.series_api.port)
        sections['DEFAULT']['worker_self_reference_url'] = (
            self.series_api.url)
        sections['database'] = {'connection': self.backend.url('series')}
        glance_demo.write_config(layout, sections, self.args.series_tree)
        self.backend.create('series')
        took = manage(self.args.series_python, layout.conf, 'db_sync')
        self.checks.figures.append('the series\' db_sync: %.1f s' % took)
        return 'config: %s' % os.path.relpath(layout.conf, ROOT)

    def start(self, api):
        started = time.monotonic()
        api.start(timeout=2 * WAIT)
        note = ''
        if api is self.train_api and 'synced' not in self.checks.ok:
            note = ('; on the database as the series left it, since '
                    'Train\'s db_sync failed')
        return 'on %s, ready in %.1f s%s' % (
            api.url, time.monotonic() - started, note)

    def upload(self):
        image_id = self.series.create_image('forward-uploaded')['id']
        data = os.urandom(UPLOADED_SIZE)
        resp = self.series.upload(image_id, data)
        expect(resp.status_code == 204, 'upload: %d %s' % (
            resp.status_code, glance_http.message(resp)))
        self.expect_image(self.series, image_id, 'active', data)
        self.images['uploaded'] = image_id, glance_http.md5(data)
        return '%s: %s, active' % (image_id, mib(UPLOADED_SIZE))

    def stage(self, name, size):
        image_id = self.series.create_image(name)['id']
        data = os.urandom(size)
        resp = self.series.stage(image_id, data)
        expect(resp.status_code == 204, 'stage: %d %s' % (
            resp.status_code, glance_http.message(resp)))
        return image_id, data

    def direct(self):
        image_id, data = self.stage('forward-glance-direct', DIRECT_SIZE)
        image, seen = self.series.import_and_wait(image_id)
        expect(image['status'] == 'active', 'states: %s' % ' -> '.join(seen))
        self.expect_image(self.series, image_id, 'active', data)
        self.images['direct'] = image_id, glance_http.md5(data)
        return '%s: %s staged and imported' % (image_id, mib(DIRECT_SIZE))

    def staged(self):
        image_id, data = self.stage('forward-staged', STAGED_SIZE)
        self.expect_image(self.series, image_id, 'uploading')
        files = self.staged_files(image_id)
        expect(files == [image_id], 'the staging store holds %s' % files)
        self.images['staged'] = image_id, glance_http.md5(data)
        return '%s: %s in %s' % (image_id, mib(STAGED_SIZE),
                                 os.path.relpath(self.staging, ROOT))

    def killed(self):
        image_id = self.series.create_image('forward-killed-mid-stage')['id']
        self.images['killed'] = image_id, None
        partial = os.path.join(self.staging, image_id + '.part')
        slow = SlowStage(self.series, image_id)
        slow.start()
        try:
            expect(slow.waiting.wait(WAIT), 'the client did not send %s '
                   'within %d s' % (mib(KILLED_AT), WAIT))
            deadline = time.monotonic() + WAIT
            while not (os.path.exists(partial) and
                       os.path.getsize(partial) >= KILLED_AT // 2):
                expect(time.monotonic() < deadline, '%s did not reach %s '
                       'within %d s' % (partial, mib(KILLED_AT // 2), WAIT))
                time.sleep(0.05)
            written = os.path.getsize(partial)
            code = kill_group(self.series_api)
        finally:
            slow.finish()
        expect(code == -signal.SIGKILL, 'glance-api exited %s' % code)
        expect('response' not in slow.outcome, 'the stage was answered: %s'
               % slow.outcome.get('response'))
        self.checks.figures.append('killed mid-stage: %s of %s written' % (
            mib(written), mib(KILLED_SIZE)))
        return '%s: SIGKILL with %s of %s in %s' % (
            image_id, mib(written), mib(KILLED_SIZE),
            os.path.basename(partial))

    def stop_series(self):
        code = self.series_api.stop()
        for path in (self.layout.log, self.layout.output):
            if os.path.exists(path):
                os.replace(path, path.replace('glance-api.',
                                              'glance-api-series.'))
        return code

    # -- the copies and Train's glance-manage

    def copy(self):
        self.backend.copy('series', 'after_use')
        if not self.rolling:
            return 'kept as the series left it'
        self.backend.copy('series', 'rolling')
        return 'kept as the series left it, and one for the rolling upgrade'

    def sync(self):
        took = manage(self.args.train_python, self.layout.conf, 'db_sync')
        self.checks.figures.append('Train\'s db_sync: %.1f s' % took)
        return 'alembic_version: %s' % ', '.join(
            schema(self.backend.url('series'))[1])

    def rolling_phase(self, phase):
        conf = database_conf(os.path.join(self.layout.base, 'rolling.conf'),
                             self.backend.url('rolling'))
        manage(self.args.train_python, conf, 'db', phase)

    # -- Train's glance-api

    def stores(self):
        resp = self.train.request('GET', '/v2/info/stores')
        expect(resp.status_code == 200, 'GET /v2/info/stores: %d %s' % (
            resp.status_code, glance_http.message(resp)))
        ids = [store['id'] for store in resp.json()['stores']]
        expect(sorted(ids) == ['cheap', 'fast'], 'listed: %s' % ids)
        return 'listed: %s' % ', '.join(ids)

    def shown(self):
        statuses = dict((what, self.train.status(image_id))
                        for what, (image_id, _) in self.images.items())
        expect(statuses['uploaded'] == statuses['direct'] == 'active' and
               statuses['staged'] == 'uploading' and
               statuses['killed'] != 'active', 'statuses: %s' % statuses)
        image_id, md5 = self.images['uploaded']
        resp = self.train.download(image_id)
        got = glance_http.md5(resp.content)
        expect(resp.status_code == 200 and got == md5, 'the uploaded '
               'image\'s download: %d, md5 %s' % (resp.status_code, got))
        return ', '.join('%s %s' % item for item in sorted(statuses.items()))

    def import_staged(self):
        image_id, md5 = self.images['staged']
        started = time.monotonic()
        image, seen = self.train.import_and_wait(image_id)
        took = time.monotonic() - started
        expect(image['status'] == 'active', 'states: %s' % ' -> '.join(seen))
        expect(image['checksum'] == md5, 'checksum %s, staged %s' % (
            image['checksum'], md5))
        self.checks.figures.append('Train\'s import of the staged %s: '
                                   '%.1f s' % (mib(STAGED_SIZE), took))
        return '%s: active in %.1f s, checksum %s' % (image_id, took, md5)

    def unstaged(self):
        image_id = self.images['staged'][0]
        left = glance_http.settled(lambda: self.staged_files(image_id), [])
        expect(left == [], 'still in %s: %s' % (
            os.path.relpath(self.staging, ROOT), left))

    # -- the schema

    def pristine(self):
        self.backend.create('pristine')
        conf = database_conf(os.path.join(self.layout.base, 'pristine.conf'),
                             self.backend.url('pristine'))
        took = manage(self.args.pristine_python, conf, 'db_sync')
        self.checks.figures.append('18.0.1\'s db_sync: %.1f s' % took)
        self.schemas['pristine'] = schema(self.backend.url('pristine'))
        self.schemas['series'] = schema(self.backend.url('after_use'))
        return '%d tables' % sum(line.startswith('table ')
                                 for line in self.schemas['pristine'][0])

    def same(self, part):
        same(self.schemas['pristine'][part], self.schemas['series'][part],
             '18.0.1 db_sync', 'the series after use')

    # -- helpers

    def staged_files(self, image_id):
        return [name for name in glance_demo.list_files(self.staging)
                if name.startswith(image_id)]

    def expect_image(self, glance, image_id, status, data=None):
        image = glance.image(image_id)
        expect(image['status'] == status, 'status %s' % image['status'])
        if data is not None:
            expect(image['checksum'] == glance_http.md5(data),
                   'checksum %s' % image['checksum'])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--build-dir', required=True)
    parser.add_argument('--series-python', required=True)
    parser.add_argument('--series-tree', required=True)
    parser.add_argument('--pristine-python', required=True)
    parser.add_argument('--train-python', required=True)
    parser.add_argument('--postgresql-url',
                        help='an account that may create databases')
    parser.add_argument('--backends', default='sqlite,postgresql')
    args = parser.parse_args()
    for name in ('build_dir', 'series_python', 'series_tree',
                 'pristine_python', 'train_python'):
        setattr(args, name, os.path.abspath(getattr(args, name)))
    started = time.monotonic()
    # Train and 18.0.1 run their own code only.
    os.environ.pop('PYTHONPATH', None)

    def terminated(signum, frame):
        raise KeyboardInterrupt('SIGTERM')
    signal.signal(signal.SIGTERM, terminated)
    everything = []
    try:
        for name in args.backends.split(','):
            if name == 'sqlite':
                backend = SQLite(os.path.join(args.build_dir, 'sqlite'))
            else:
                backend = PostgreSQL(args.postgresql_url)
            everything.append(Run(backend, args).all())
    finally:
        for api in STARTED:
            api.stop()
    print('\n== figures')
    for checks in everything:
        for line in checks.figures:
            print('    %s: %s' % (checks.backend, line))
    failed = [text for checks in everything for text in checks.failed]
    if failed:
        print('\nFAILED:')
        for text in failed:
            print('    ' + text)
    passed = sum(checks.passed for checks in everything)
    print('\nforward: %d passed, %d failed in %.0f s' % (
        passed, len(failed), time.monotonic() - started), flush=True)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
