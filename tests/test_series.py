"""Tests of ./series: the files, exit codes and lines a user sees.

Most work on a copy of the tool in a temporary directory, sharing only
the verified tarball cache (SERIES_CACHE, or build/cache of this checkout,
downloaded on first use).
"""

import contextlib
import functools
import getpass
import hashlib
import http.server
import importlib.machinery
import importlib.util
import io
import os
import pwd
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get('SERIES_CACHE') or os.path.join(ROOT, 'build', 'cache')


def load_series():
    loader = importlib.machinery.SourceFileLoader(
        'series_mod', os.path.join(ROOT, 'series'))
    mod = importlib.util.module_from_spec(
        importlib.util.spec_from_loader('series_mod', loader))
    loader.exec_module(mod)
    return mod


def git(tree, *args):
    return subprocess.check_output(
        ['git', '-c', 'user.name=Test', '-c', 'user.email=test@localhost'] +
        list(args), cwd=tree, universal_newlines=True)


def commit(tree, path, text, subject, mode='a'):
    full = os.path.join(tree, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, mode) as f:
        f.write(text)
    git(tree, 'add', path)
    git(tree, 'commit', '-q', '-m', subject + '\n\nBody of the change.\n')
    return git(tree, 'rev-parse', 'HEAD').strip()


class Temp(unittest.TestCase):

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix='series-test-')
        self.addCleanup(shutil.rmtree, self.root, True)

    def write(self, name, text):
        path = os.path.join(self.root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(text)
        return path


class SeriesCase(Temp):
    """A copy of the tool, its pin and an empty series."""

    def setUp(self):
        super(SeriesCase, self).setUp()
        for name in ('series', 'glance.pin', 'constraints-py37.txt'):
            shutil.copy(os.path.join(ROOT, name), self.root)
        self.write('patches/series', '')
        self.tree = os.path.join(self.root, 'build', 'glance')
        self.cache = CACHE

    def series(self, *args, **env):
        return subprocess.run(
            [sys.executable, os.path.join(self.root, 'series')] + list(args),
            cwd=self.root, env=dict(os.environ, SERIES_CACHE=self.cache,
                                    **env), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, universal_newlines=True)

    def ok(self, *args):
        proc = self.series(*args)
        self.assertEqual(0, proc.returncode, proc.stdout)
        return proc.stdout

    def fails(self, *args, **env):
        proc = self.series(*args, **env)
        self.assertEqual(1, proc.returncode, proc.stdout)
        return proc.stdout

    def patch_files(self):
        folder = os.path.join(self.root, 'patches')
        return dict((name, open(os.path.join(folder, name), 'rb').read())
                    for name in os.listdir(folder))

    def add_two_commits(self):
        commit(self.tree, 'README.rst', '\nFirst change.\n',
               'Add a first line to the README')
        commit(self.tree, 'tox.ini', '\n# second\n',
               'Add a comment to tox.ini')


class TestApplyExport(SeriesCase):

    def test_round_trip_is_byte_identical(self):
        self.ok('apply')
        self.assertIn('pristine', git(self.tree, 'tag').split())
        self.ok('export')
        self.assertEqual({'series': b''}, self.patch_files())
        self.add_two_commits()
        self.assertIn('exported 2 patches', self.ok('export'))
        first = self.patch_files()
        self.assertEqual(b'add-a-first-line-to-the-readme.patch\n'
                         b'add-a-comment-to-tox-ini.patch\n', first['series'])
        self.ok('export')
        self.assertEqual(first, self.patch_files())
        self.assertIn('pristine + 2 patches', self.ok('apply'))
        self.assertIn('clean: build/glance matches patches/ (2 patches)',
                      self.ok('status'))
        self.ok('export')
        self.assertEqual(first, self.patch_files())

    def test_broken_patch_names_the_patch(self):
        self.ok('apply')
        self.add_two_commits()
        self.ok('export')
        path = os.path.join(self.root, 'patches',
                            'add-a-comment-to-tox-ini.patch')
        text = open(path).read()
        with open(path, 'w') as f:
            f.write(text.replace('tox.ini', 'no-such-file.ini'))
        self.assertIn('patch add-a-comment-to-tox-ini.patch does not apply',
                      self.fails('apply', '--force'))

    def test_apply_refuses_to_destroy_unexported_work(self):
        self.ok('apply')
        self.add_two_commits()
        self.assertIn('not exported', self.fails('apply'))
        self.assertEqual('2', git(self.tree, 'rev-list', '--count',
                                  'pristine..').strip())


class TestStatus(SeriesCase):

    def setUp(self):
        super(TestStatus, self).setUp()
        self.ok('apply')
        self.add_two_commits()
        self.ok('export')

    def assert_lost(self, *words):
        out = self.fails('status')
        self.assertIn('NOT SAVED', out)
        for word in words:
            self.assertIn(word, out)

    def test_edits_and_new_files(self):
        with open(os.path.join(self.tree, 'setup.py'), 'a') as f:
            f.write('# edit\n')
        self.write('build/glance/glance/new.py', '# new\n')
        self.assert_lost('uncommitted in build/glance:  M setup.py',
                         'uncommitted in build/glance: ?? glance/new.py')

    def test_generated_files_are_not_work(self):
        self.write('build/glance/.stestr/0', '')
        self.write('build/glance/glance/__pycache__/x.pyc', '')
        self.assertIn('clean', self.ok('status'))

    def test_unexported_and_amended_commits(self):
        commit(self.tree, 'setup.cfg', '\n# third\n', 'Add a third change')
        self.assert_lost('commit "Add a third change" is not exported',
                         'patches/series differs')
        self.ok('export')
        self.assertIn('(3 patches)', self.ok('status'))
        with open(os.path.join(self.tree, 'tox.ini'), 'a') as f:
            f.write('# more\n')
        git(self.tree, 'commit', '-qa', '--amend', '--no-edit')
        self.assert_lost('patches/add-a-third-change.patch differs')

    def test_hand_edited_and_stray_patches(self):
        with open(os.path.join(self.root, 'patches',
                               'add-a-first-line-to-the-readme.patch'),
                  'a') as f:
            f.write('\n')
        self.write('patches/stray.patch', 'From nobody\n')
        self.assert_lost(
            'patches/add-a-first-line-to-the-readme.patch differs',
            'patches/stray.patch matches no commit')


class Index(object):
    """A PEP 503 index on 127.0.0.1 serving one project page and files."""

    def __init__(self, root, page):
        os.makedirs(os.path.join(root, 'simple', 'glance'))
        with open(os.path.join(root, 'simple', 'glance', 'index.html'),
                  'w') as f:
            f.write(page)

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass
        self.server = http.server.HTTPServer(
            ('127.0.0.1', 0), functools.partial(Quiet, directory=root))
        self.url = 'http://127.0.0.1:%d/simple' % self.server.server_port
        threading.Thread(target=self.server.serve_forever,
                         daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class TestTarball(SeriesCase):
    """The tarball comes from the index and is checked before use."""

    def release(self, pin_digest=None, fragment=''):
        """A stand-in release whose setup.py leaves a marker if it runs,
        on an index of its own; the pin names pin_digest (default: its
        own)."""
        self.marker = os.path.join(self.root, 'setup-py-ran')
        self.write('src/glance-18.0.1/setup.py', 'open(%r, "w").close()\n'
                   % self.marker)
        path = os.path.join(self.root, 'files', 'glance-18.0.1.tar.gz')
        os.makedirs(os.path.dirname(path))
        with tarfile.open(path, 'w:gz') as tar:
            tar.add(os.path.join(self.root, 'src', 'glance-18.0.1'),
                    'glance-18.0.1')
        digest = hashlib.sha256(open(path, 'rb').read()).hexdigest()
        self.write('glance.pin', 'name = glance\nversion = 18.0.1\n'
                   'sha256 = %s\n' % (pin_digest or digest))
        index = Index(self.root, '<a href="../../files/glance-18.0.1.tar.gz'
                      '%s">glance-18.0.1.tar.gz</a>' % fragment.replace(
                          'OWN', digest))
        self.addCleanup(index.stop)
        self.cache = os.path.join(self.root, 'empty-cache')
        return index.url

    def test_a_cached_file_with_another_hash_is_refused(self):
        self.cache = os.path.join(self.root, 'bad-cache')
        self.write('bad-cache/glance-18.0.1.tar.gz', 'not the release')
        self.assertIn('refusing', self.fails('apply'))
        self.assertFalse(os.path.exists(self.tree))

    def test_the_release_is_checked_before_anything_runs_it(self):
        url = self.release(fragment='#sha256=OWN')
        proc = self.series('apply', PIP_INDEX_URL=url)
        self.assertEqual(0, proc.returncode, proc.stdout)
        self.assertTrue(os.path.exists(os.path.join(
            self.cache, 'glance-18.0.1.tar.gz')))
        self.assertTrue(os.path.exists(os.path.join(self.tree, 'setup.py')))
        self.assertFalse(os.path.exists(self.marker))

    def test_a_file_with_another_hash_is_refused_and_not_kept(self):
        url = self.release('0' * 64)
        self.assertIn('but glance.pin requires ' + '0' * 64,
                      self.fails('apply', PIP_INDEX_URL=url))
        self.assertEqual([], os.listdir(self.cache))
        self.assertFalse(os.path.exists(self.marker))
        self.assertFalse(os.path.exists(self.tree))

    def test_an_index_without_the_release_says_so(self):
        index = Index(os.path.join(self.root, 'other'), '<html></html>')
        self.addCleanup(index.stop)
        self.cache = os.path.join(self.root, 'empty-cache')
        self.assertIn('lists no glance-18.0.1.tar.gz',
                      self.fails('apply', PIP_INDEX_URL=index.url))


class TestToolsEnv(Temp):
    """pip reads no configuration file; the locks say what it installs."""

    def test_the_lock_and_no_pip_conf(self):
        os.environ['PIP_FIND_LINKS'] = '/opt/wheels'
        self.addCleanup(os.environ.pop, 'PIP_FIND_LINKS')
        env = load_series().tools_env()
        self.assertEqual(os.devnull, env['PIP_CONFIG_FILE'])
        self.assertNotIn('PIP_FIND_LINKS', env)
        self.assertTrue(env['PIP_CONSTRAINT'].endswith('constraints-py37.txt'))


def fake_python(path, version, executable=None):
    """A script that answers the probe of ./series as Python X.Y would."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write('#!/bin/sh\nprintf "%%s %%s" "%s" "%s"\n' % (
            version, executable or path))
    os.chmod(path, 0o755)
    return path


class TestPythons(Temp):

    def find(self, version, **env):
        mod = load_series()
        saved = dict(os.environ)
        os.environ.update(dict(dict(PYENV_ROOT=self.root, PATH=self.root,
                                    SERIES_PYTHON27='', SERIES_PYTHON36='',
                                    SERIES_PYTHON37=''), **env))
        try:
            return mod.find_python(version)
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def test_newest_pyenv_release_and_the_right_version(self):
        versions = os.path.join(self.root, 'versions')
        for release in ('3.6.9', '3.6.15', '3.6.15-dev'):
            fake_python(os.path.join(versions, release, 'bin', 'python3.6'),
                        '3.6')
        self.assertEqual(os.path.join(versions, '3.6.15', 'bin',
                                      'python3.6'), self.find('3.6'))
        # The variable names a 3.8: passed over for the one on PATH.
        right = fake_python(os.path.join(self.root, 'right'), '3.6')
        fake_python(os.path.join(self.root, 'python3.6'), '3.6', right)
        self.assertEqual(right, self.find('3.6', SERIES_PYTHON36=fake_python(
            os.path.join(self.root, 'wrong'), '3.8')))

    def test_a_missing_python_fails_at_once_saying_how(self):
        if os.path.exists('/usr/bin/python2.7') or os.path.exists(
                '/usr/local/bin/python2.7'):
            self.skipTest('this machine has a system python2.7')
        self.write('python2.7', '#!/bin/sh\necho "pyenv: python2.7: '
                   'command not found" >&2\nexit 127\n')
        os.chmod(os.path.join(self.root, 'python2.7'), 0o755)
        with self.assertRaises(Exception) as caught:
            self.find('2.7')
        for words in ('Python 2.7 is required', 'pyenv install 2.7.18',
                      'SERIES_PYTHON27'):
            self.assertIn(words, str(caught.exception))
        proc = subprocess.run(
            [sys.executable, os.path.join(ROOT, 'series'), 'test', 'unit',
             '--python', '2.7'], env=dict(
                 os.environ, SERIES_PYTHON27='/nonexistent',
                 PYENV_ROOT=self.root, PATH=self.root + ':/usr/bin:/bin'),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            universal_newlines=True)
        self.assertEqual(1, proc.returncode, proc.stdout)
        self.assertIn('Python 2.7 is required', proc.stdout)
        self.assertNotIn('==>', proc.stdout)


class TestArguments(unittest.TestCase):

    def parse(self, *args):
        args = load_series().parse_args(['test'] + list(args))
        return args.jobs, args.python, args.functional_python, args.skip

    def test_jobs_and_pythons(self):
        every, jobs = ['2.7', '3.6', '3.7'], list(load_series().JOBS)
        self.assertEqual((jobs, every, every, []), self.parse())
        self.assertEqual((['unit'], ['2.7'], ['2.7'], []),
                         self.parse('unit', '--python', '2.7'))
        self.assertEqual((['unit', 'pep8', 'genconfig'], ['3.7'], ['3.7'],
                          []), self.parse('genconfig', 'unit,pep8',
                                          '--python=3.7'))
        self.assertEqual((jobs[:-1], every, ['2.7', '3.7'], ['bisect']),
                         self.parse('--functional-python', '3.7,2.7',
                                    '--skip', 'bisect'))
        self.assertEqual(['cluster', 'forward', 'bisect'], jobs[-3:])

    def test_bad_arguments_are_refused_with_the_usage(self):
        for args in (['unit', '--python', '3.8'], ['unit', '--python'],
                     ['--skip', 'lint'], ['--skip', ','], ['lint']):
            err = io.StringIO()
            with self.assertRaises(SystemExit) as caught, \
                    contextlib.redirect_stderr(err):
                self.parse(*args)
            self.assertEqual(2, caught.exception.code, args)
            self.assertIn('usage: ./series', err.getvalue(), args)


class Fakes(Temp):
    """The module, its output collected and some steps replaced."""

    def setUp(self):
        super(Fakes, self).setUp()
        self.mod = load_series()
        self.mod.LOGS = self.root
        self.said = []
        self.mod.say = self.mod.step = self.said.append

    def tree(self, name='tree'):
        tree = os.path.join(self.root, name)
        os.makedirs(tree)
        git(tree, 'init', '-q')
        return tree


class TestRunners(Fakes):

    def test_summaries(self):
        stestr = ('Totals\n======\nRan: 5 tests in 1.0 sec.\n - Passed: 3\n'
                  ' - Skipped: 1\n - Expected Fail: 0\n - Unexpected '
                  'Success: 0\n - Failed: 1\nSum of execute time: 1.0 s\n')
        self.assertEqual('3 passed, 1 failed, 1 skipped',
                         self.mod.tally(self.mod.parse_stestr(stestr)))
        self.assertIsNone(self.mod.parse_stestr('Traceback: ImportError\n'))
        pytest = ('acceptance/test_api.py::test_one PASSED\n==== 2 failed, '
                  '45 passed, 1 error in 30.82 seconds ====\n')
        self.assertEqual('45 passed, 3 failed',
                         self.mod.tally(self.mod.parse_pytest(pytest)))
        self.assertIsNone(self.mod.parse_pytest('ImportError: no pytest\n'))
        # No totals, or an exit code they do not explain: one failure.
        self.assertEqual((0, 1), tuple(self.mod.judged('job', 1, None)[k]
                                       for k in ('passed', 'failed')))
        found = self.mod.judged('job', 1, self.mod.Counts(passed=2))
        self.assertEqual('2 passed, 1 failed', self.mod.tally(found))
        found = self.mod.judged('job', 0, self.mod.Counts(
            passed=2, skipped=1), skips_fail=True)
        self.assertEqual('2 passed, 1 failed', self.mod.tally(found))

    def test_a_broken_result_stream_runs_again(self):
        broke = ('{0} subunit.parser [0.000076s] ... FAILED\n'
                 'ValueError: Not a text type application/octet-stream\n')
        good = 'Totals\n======\n - Passed: 3\n - Failed: 0\n'

        def runner(outputs):
            def run():
                self.write('job.log', 'log')
                text = outputs.pop(0)
                return (0 if 'Totals' in text else 1), text
            return run
        counts = self.mod.stestr_job(runner([broke, broke, good]), 'job')
        self.assertEqual('3 passed, 0 failed', self.mod.tally(counts))
        self.assertTrue(os.path.exists(os.path.join(
            self.root, 'job-stream-broke-1.log')))
        outputs = [broke] * 3
        self.assertEqual(1, self.mod.stestr_job(runner(outputs),
                                                'job')['failed'])
        self.assertEqual([], outputs)

    def test_a_silent_job_is_stopped_with_its_children(self):
        pidfile = os.path.join(self.root, 'child.pid')
        self.mod.sys.stdout = io.StringIO()
        self.addCleanup(setattr, self.mod.sys, 'stdout', sys.stdout)
        self.mod.SILENCE_MINUTES = 0.05
        # setsid: a session of its own, as stestr gives its workers.
        rc, text = self.mod.stream(
            ['sh', '-c', 'echo started; setsid sleep 120 & echo $! > %s; '
             'wait' % pidfile], self.root, dict(os.environ), 'job')
        self.assertNotEqual(0, rc)
        self.assertIn('NO OUTPUT FOR 0.05 MINUTES: the job is hung', text)
        self.assertIn('the last line was: started', text)
        self.assertIn('the job is hung', open(self.mod.log_path('job')).read())
        child = int(open(pidfile).read())
        for _ in range(50):
            try:
                os.kill(child, 0)
            except OSError:
                break
            time.sleep(0.1)
        else:
            self.fail('the silent child %d still runs' % child)
        self.mod.SILENCE_MINUTES = 0.5
        self.assertEqual((0, 'a\nb\n'), self.mod.stream(
            ['sh', '-c', 'echo a; sleep 1; echo b'], self.root,
            dict(os.environ), 'job'))


class TestJobs(Fakes):

    def test_tree_jobs_read_what_git_tracks_and_count_checks(self):
        tree = self.mod.TREE = self.tree()
        self.write('tree/setup.py', 'setup()\n')
        git(tree, 'add', '-A')
        git(tree, 'commit', '-q', '-m', 'base')
        self.write('tree/setup.py', 'setup()  # edited\n')
        self.write('tree/.eggs/README.txt', 'eggs\n')
        self.mod.SCRATCH = os.path.join(self.root, 'scratch')
        ran = []
        self.mod.tox_run = lambda env, clone, label: ran.append(clone) or (
            ran[0].endswith('genconfig') and 1, '')
        counts = self.mod.scratch_job('pep8', lambda clone: [
            ('first', lambda: None), ('second', lambda: 'found 2 times')])
        clone = os.path.join(self.mod.SCRATCH, 'pep8')
        self.assertEqual([clone], ran)
        self.assertEqual(['.git', 'setup.py'], sorted(os.listdir(clone)))
        self.assertEqual('setup()  # edited\n',
                         open(os.path.join(clone, 'setup.py')).read())
        self.assertEqual(' M setup.py\n', git(tree, 'status', '--short',
                                              '--untracked-files=no'))
        self.assertEqual(['pep8: ok   tox', 'pep8: ok   first',
                          'pep8: FAILED: second: found 2 times',
                          'pep8: 2 passed, 1 failed'], self.said[1:])
        del ran[:]
        counts = self.mod.scratch_job('genconfig', lambda clone: [
            ('first', lambda: self.fail('a check ran'))])
        self.assertEqual((0, 1), (counts['passed'], counts['failed']))

    def test_release_notes(self):
        clone = self.tree()
        source = 'tree/releasenotes/source/'
        self.write(source + 'index.rst', '.. toctree::\n\n   unreleased\n'
                   '   rocky\n   queens\n')
        self.write(source + 'unreleased.rst', '.. release-notes::\n')
        for page in ('rocky', 'queens'):
            self.write(source + page + '.rst', '.. release-notes::\n'
                       '   :branch: stable/%s\n' % page)
        commit(clone, 'releasenotes/notes/base-1.yaml', '---\n', 'Base')
        git(clone, 'tag', 'pristine')
        git(clone, 'branch', 'stable/queens')
        commit(clone, 'releasenotes/notes/a-2.yaml', '---\nfeatures:\n'
               '  - |\n    Glance now keeps ``staged`` data.\n', 'Note')
        (description, check), = self.mod.releasenotes_checks(clone)
        self.assertEqual(['index.rst', 'queens.rst', 'unreleased.rst'],
                         sorted(os.listdir(os.path.join(self.root, source))))
        self.assertEqual('.. toctree::\n\n   unreleased\n   queens\n',
                         open(os.path.join(clone, 'releasenotes', 'source',
                                           'index.rst')).read())
        self.assertIn('   :ignore-notes: base-1.yaml', open(os.path.join(
            clone, 'releasenotes', 'source', 'unreleased.rst')).read())
        self.assertIn('1 notes rendered', description)
        self.assertIn('no releasenotes/build/html/unreleased.html', check())
        page = 'tree/releasenotes/build/html/unreleased.html'
        self.write(page, '<p>Glance now keeps <code>staged</code>\ndata')
        self.assertIsNone(check())
        self.write(page, '<p>Something else entirely.</p>')
        self.assertEqual('not on the page: releasenotes/notes/a-2.yaml '
                         '("Glance now keeps staged")', check())
        self.assertEqual(
            ['With multiple backends enabled,', 'When enabled_backends is '
             'set,', 'Short item on one', 'Operators must now set'],
            self.mod.note_openings(
                '---\nprelude: >\n    With multiple backends enabled, '
                'Glance\n    keeps.\nfeatures:\n  - |\n    When '
                '``enabled_backends`` is set, more.\n  - Short item on one '
                'line.\nupgrade:\n  - |\n\n    *Operators* must now set '
                'it.\n'))

    def test_a_skipped_functional_test_is_a_failure(self):
        seen = {}

        def tox_run(env_name, tree, label, python, extra_env=None):
            seen.update(env=env_name, extra=extra_env)
            return 0, 'Totals\n======\n - Passed: 5\n - Skipped: 1\n'
        self.mod.tox_run = tox_run

        @contextlib.contextmanager
        def servers(kinds):
            yield {'mysql': 'mysql+pymysql://u@h/', 'postgresql': 'pg://h/'}
        self.mod.db_servers = servers
        self.assertEqual('5 passed, 1 failed',
                         self.mod.tally(self.mod.job_functional('3.7')))
        self.assertEqual({'env': 'functional-py37', 'extra': {
            'OS_TEST_DBAPI_ADMIN_CONNECTION':
            'mysql+pymysql://u@h/;pg://h/;sqlite://'}}, seen)
        self.assertIn('TESTS SKIPPED', self.said[-2])

    def test_a_job_that_cannot_run_fails_and_the_closing_line(self):
        self.mod.ensure = self.mod.set_up = lambda *args: None
        self.mod.find_python = lambda version: '/usr/bin/python' + version

        def no_server(python):
            raise self.mod.Failure('the mysql server did not start')
        self.mod.job_functional = no_server
        self.mod.job_unit = lambda python: self.mod.Counts(
            passed=7, skipped=2)
        self.assertEqual(1, self.mod.cmd_test(['unit', 'functional'],
                                              ['3.7'], ['2.7']))
        self.assertIn('functional py27: FAILED: the mysql server did not '
                      'start: counted as one failure', self.said)
        self.assertEqual('7 passed, 1 failed, 2 skipped', self.said[-1])

    def test_tox_gets_the_lock_and_passes_extra_variables_on(self):
        calls = []
        self.mod.stream = lambda cmd, cwd, env, log: (
            calls.append((cmd, env)) or (0, ''))
        self.mod.TOXWORK = self.root
        self.mod.stamp_of = lambda python, lock: 'stamp'
        self.mod.tox_run('functional-py27', self.root, 'functional py27',
                         '2.7', {'OS_TEST_DBAPI_ADMIN_CONNECTION': 'x'})
        cmd, env = calls[0]
        self.assertIn('--recreate', cmd)
        self.assertEqual('x', env['OS_TEST_DBAPI_ADMIN_CONNECTION'])
        self.assertIn('OS_TEST_DBAPI_ADMIN_CONNECTION',
                      env['TOX_TESTENV_PASSENV'].split())
        self.assertTrue(env['PIP_CONSTRAINT'].endswith('-py27.txt'))

    def test_forward_counts_the_checks_of_its_script(self):
        @contextlib.contextmanager
        def servers(kinds):
            yield {'postgresql': 'postgresql://u@h/'}
        self.mod.db_servers = servers
        self.mod.glance_python = self.mod.pristine_venv = lambda: 'x'
        self.mod.train_venv = lambda: 'train-python'
        self.mod.tools_env = dict
        for rc, text, result in (
                (1, 'forward: 30 passed, 2 failed in 90 s\n', (30, 2)),
                (1, 'Traceback (most recent call last):\n', (0, 1)),
                (1, 'forward: 35 passed, 0 failed in 9 s\n', (35, 1))):
            ran = []
            self.mod.stream = lambda cmd, cwd, env, log: (
                ran.append(cmd) or (rc, text))
            counts = self.mod.job_forward()
            self.assertEqual(result, (counts['passed'], counts['failed']))
            self.assertIn('--postgresql-url', ran[0])

    def test_the_train_venv_is_made_again_only_when_its_inputs_change(self):
        made = []
        self.mod.TRAIN_CONSTRAINTS = self.write('uc.txt', 'SQLAlchemy===1\n')
        self.mod.FORWARD = self.root
        self.mod.find_python = lambda version: '/usr/bin/python3.7'
        self.mod.tarball = lambda pin_file: 'glance-19.0.4.tar.gz'
        self.mod.subprocess.call = lambda cmd, **kw: made.append(cmd) or 0
        self.addCleanup(setattr, self.mod.subprocess, 'call',
                        subprocess.call)
        for _ in range(2):
            self.mod.train_venv()
        self.assertEqual(['-c', self.mod.TRAIN_CONSTRAINTS,
                          'glance-19.0.4.tar.gz', 'PyMySQL', 'psycopg2'],
                         made[-1][-5:])
        self.assertEqual(2, len(made))
        self.write('uc.txt', 'alembic===1.1.0\n')
        self.mod.train_venv()
        self.assertEqual(4, len(made))


class TestBisect(Fakes):
    """The unit job at each commit: in the tip's environment when it fits,
    with tox otherwise."""

    def test_each_commit_runs_the_unit_job(self):
        tree = self.mod.TREE = self.tree('glance')
        self.mod.BUILD = self.mod.TOXWORK = self.root
        self.write('py37/bin/stestr', '')
        commit(tree, 'glance/tests/unit/test_a.py', 'import os\n', 'Base')
        commit(tree, 'requirements.txt', 'pbr  # build\n', 'Require pbr')
        commit(tree, 'test-requirements.txt', 'mock\n', 'Require mock')
        git(tree, 'tag', 'pristine')
        for path, text, subject in (
                ('setup.cfg', '[metadata]\n', 'Add setup.cfg'),
                ('glance/c.py', 'c\n', 'Change code'),
                ('setup.cfg', '[files]\n', 'Change setup.cfg'),
                ('doc/source/a.rst', 'a\n', 'Document it'),
                ('requirements.txt', 'six\n', 'Require six')):
            commit(tree, path, text, subject)
        ran = []

        def stream(cmd, cwd, env, label):
            ran.append('tox' if 'tox' in cmd[0] else cmd[-1])
            open(self.mod.log_path(label), 'w').close()
            return 0, 'Totals\n======\n - Passed: 2\n - Failed: 0\n'
        self.mod.stream = stream
        self.mod.tools_env = lambda *args: {
            'PATH': '/bin', 'PYTHONDONTWRITEBYTECODE': '1'}
        self.mod.stamp_of = lambda *args: 'stamp'
        # The commits whose setup.cfg is not the tip's run tox; the others,
        # whose requirements are some of the tip's, stestr in its env.
        self.assertEqual('10 passed, 0 failed',
                         self.mod.tally(self.mod.job_bisect()))
        self.assertEqual(['tox', 'tox', 'run', 'run', 'run'], ran)
        self.assertFalse(os.path.exists(os.path.join(self.root, 'bisect')))


class TestDBServers(Fakes):

    def test_servers_given_by_url(self):
        os.environ['SERIES_MYSQL_URL'] = 'mysql+pymysql://a:b@db1:3306/'
        self.addCleanup(os.environ.pop, 'SERIES_MYSQL_URL')
        self.mod.ensure = lambda what: self.fail('installing')
        with self.mod.db_servers(['mysql']) as urls:
            self.assertEqual({'mysql': 'mysql+pymysql://a:b@db1:3306/'}, urls)

    def test_own_servers_run_by_pifpaf_and_stop(self):
        # MariaDB and PostgreSQL are installed with apt-get as root when
        # missing; otherwise this fails, saying how: never skipped.
        for var in self.mod.DB_URL_VARS.values():
            self.addCleanup(os.environ.pop, var, None)
            os.environ.pop(var, None)
        with self.mod.db_servers(['mysql', 'postgresql']) as urls:
            mysql, postgresql = urls['mysql'], urls['postgresql']
            socket = mysql.split('unix_socket=', 1)[1]
            self.assertTrue(mysql.startswith('mysql+pymysql://'), mysql)
            self.assertIn('charset=utf8', mysql)
            out = subprocess.run(
                [self.mod.db_program('mysql', 'mysql'), '--no-defaults',
                 '-S', socket, '-e', 'CREATE DATABASE series_t; '
                 'DROP DATABASE series_t'], stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, universal_newlines=True)
            self.assertEqual(0, out.returncode, out.stdout)
            query = dict(part.split('=', 1) for part in
                         postgresql.split('?', 1)[1].split('&'))
            user = postgresql.split('://', 1)[1].split('@', 1)[0]
            self.assertEqual('postgres' if os.geteuid() == 0 else
                             getpass.getuser(), user)
            out = subprocess.run(
                [self.mod.db_program('postgresql', 'psql'), '-X', '-h',
                 query['host'], '-p', query['port'], '-U', user, '-d',
                 'postgres', '-c', 'CREATE DATABASE series_t', '-c',
                 'DROP DATABASE series_t'], stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, universal_newlines=True)
            self.assertEqual(0, out.returncode, out.stdout)
            if os.geteuid() == 0:   # never as root
                for path, name in ((socket, 'mysql'),
                                   (query['host'], 'postgres')):
                    self.assertEqual(pwd.getpwnam(name).pw_uid,
                                     os.stat(path).st_uid)
        self.assertFalse(os.path.exists(socket))
        self.assertFalse(os.path.exists(query['host']))
        self.assertIn('postgresql: server stopped (pifpaf exit code 0)',
                      self.said)
