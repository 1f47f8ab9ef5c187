"""Fixtures: real glance-api processes configured as the demo's.

./series test acceptance runs these tests with build/venv's Python and
sets GLANCE_PYTHON (the Python that has the patched Glance) and
GLANCE_TREE (the patched tree, for its paste and policy files), and for
the rolling upgrade tests GLANCE_UNPATCHED_PYTHON and
GLANCE_UNPATCHED_TREE (Glance 18.0.1 as released: build/bench's
venv-pristine and pristine).  Without them every test fails, saying so:
nothing is skipped.
"""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'demo'))

import glance_demo  # noqa: E402
import glance_http  # noqa: E402
import listener as listener_module  # noqa: E402


def _from_env(name, what):
    value = os.environ.get(name)
    if not value or not os.path.exists(value):
        pytest.fail('%s is not set to %s (got %r): run the acceptance tests '
                    'with ./series test acceptance' % (name, what, value),
                    pytrace=False)
    return value


@pytest.fixture(scope='session')
def glance_python():
    """The Python with the patched Glance installed."""
    return _from_env('GLANCE_PYTHON', 'a Python with Glance installed')


@pytest.fixture(scope='session')
def glance_tree():
    """The patched Glance tree."""
    return _from_env('GLANCE_TREE', 'the patched Glance tree')


@pytest.fixture(scope='session')
def unpatched_python():
    """The Python with Glance 18.0.1 as released installed."""
    return _from_env('GLANCE_UNPATCHED_PYTHON',
                     'a Python with Glance 18.0.1 installed')


@pytest.fixture(scope='session')
def unpatched_tree():
    """The tree of Glance 18.0.1 as released."""
    return _from_env('GLANCE_UNPATCHED_TREE', 'the Glance 18.0.1 tree')


@pytest.fixture(scope='session')
def file_server(tmpdir_factory):
    """A static HTTP server on 127.0.0.1 for web-download."""
    server = glance_demo.FileServer(str(tmpdir_factory.mktemp('web')))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def listener():
    """A listener on 127.0.0.1 recording every connection and request.

    Its URL is what a test forges: glance-api must never reach it.
    """
    with listener_module.Listener() as server:
        yield server


@pytest.fixture(scope='session')
def image_size_cap():
    """The shared glance-api's image_size_cap: small, to be exceeded."""
    return 32 << 20


@pytest.fixture(scope='session')
def api(tmpdir_factory, glance_python, glance_tree, file_server,
        image_size_cap):
    """One glance-api for every HTTP test, configured as the demo's."""
    server = glance_demo.prepared_api(
        glance_python, glance_tree, str(tmpdir_factory.mktemp('api')),
        file_server.port, image_size_cap=str(image_size_cap))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def glance(api):
    """An Images API client for the shared glance-api."""
    return glance_http.Glance(api.url)


@pytest.fixture
def layout(api):
    """The files and directories of the shared glance-api."""
    return api.layout


@pytest.fixture(scope='module')
def own_api(request, tmpdir_factory, glance_python, glance_tree):
    """A glance-api of the test module's own, configured as the demo's.

    For the tests that break its directories or load it, so that the
    shared one is not disturbed.  Its base directory is named after the
    module; it is stopped when the module's tests are done.
    """
    name = request.module.__name__.rpartition('.')[2]
    server = glance_demo.prepared_api(glance_python, glance_tree,
                                      str(tmpdir_factory.mktemp(name)))
    server.start()
    yield server
    server.stop()


_FIGURES = []


@pytest.fixture(scope='session')
def figures():
    """Lines for the closing summary: what a test measured.

    pytest keeps the tests' output to itself; these lines are printed in
    a "figures" section just above the final counts.
    """
    return _FIGURES


def pytest_terminal_summary(terminalreporter):
    if _FIGURES:
        terminalreporter.section('figures')
        for line in _FIGURES:
            terminalreporter.write_line(line)


class Refusal(object):
    """A glance-api configuration that should not start."""

    def __init__(self, python, tree, base):
        self.python = python
        self.tree = tree
        self.layout = glance_demo.Layout(base)
        self.sections = glance_demo.config_sections(
            self.layout, glance_demo.free_port())

    def run(self, wrapper=()):
        """Start glance-api; return (exit code, its output, its log).

        wrapper is a command prefix to run glance-api with, if any.
        """
        glance_demo.write_config(self.layout, self.sections, self.tree)
        code, output = glance_demo.run_api_until_exit(
            self.python, self.layout, wrapper=wrapper)
        try:
            with open(self.layout.log, errors='replace') as f:
                log = f.read()
        except FileNotFoundError:
            log = ''
        return code, output, log


@pytest.fixture
def refusal(glance_python, glance_tree, tmpdir):
    """A demo configuration to break before starting glance-api."""
    return Refusal(glance_python, glance_tree, str(tmpdir.join('api')))
