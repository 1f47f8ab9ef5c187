"""glance-api refuses to start when its stores break a reserved-store rule.

Each test breaks the demo's configuration in one way, starts glance-api
and checks what the operator sees: the exit code (6, for a reserved-store
configuration error), the error on stderr and in the log, and that no
store was created.
"""

import os

import pytest

import glance_demo

STAGING = glance_demo.STAGING_STORE
TASKS = glance_demo.TASKS_STORE


def assert_refused(refusal, message):
    """glance-api exits with code 6, saying message on stderr and in log.

    :returns: the log
    """
    code, output, log = refusal.run()
    assert code == glance_demo.EXIT_RESERVED_STORE_CONFIG, (code, output)
    assert 'ERROR: ' + message in output
    assert message in log
    assert 'ERROR glance' in log
    # Refused before glance_store created any store.
    assert not os.path.exists(os.path.join(refusal.layout.base, 'stores'))
    return log


def datadir(refusal, store):
    return refusal.layout.datadirs[store]


def test_the_unbroken_configuration_is_not_refused(refusal):
    # The control: the same harness, nothing broken; glance-api runs
    # until stopped.
    glance_demo.write_config(refusal.layout, refusal.sections,
                             refusal.tree)
    port = int(refusal.sections['DEFAULT']['bind_port'])
    api = glance_demo.GlanceApi(refusal.python, refusal.layout, port)
    api.start()
    try:
        assert api.healthy()
    finally:
        api.stop()
    for store in glance_demo.OPERATOR_STORES + glance_demo.RESERVED_STORES:
        assert os.path.isdir(datadir(refusal, store)), store


@pytest.mark.parametrize('name', [
    'os_glance_mine', STAGING, TASKS, 'OS_GLANCE_Shouting'])
def test_operator_store_named_os_glance_is_refused(refusal, name):
    default = refusal.sections['DEFAULT']
    default['enabled_backends'] += ', %s:file' % name
    refusal.sections[name] = {
        'filesystem_store_datadir': os.path.join(refusal.layout.base,
                                                 'operator-' + name)}
    assert_refused(refusal, (
        "Invalid store name '%s' in the enabled_backends option of "
        "glance-api.conf: names starting with 'os_glance_' are reserved "
        "for Glance's own stores." % name))


@pytest.mark.parametrize('store', [STAGING, TASKS])
def test_reserved_default_backend_is_refused(refusal, store):
    refusal.sections['glance_store']['default_backend'] = store
    assert_refused(refusal, (
        "Invalid value '%s' for [glance_store]/default_backend in "
        "glance-api.conf: store names starting with 'os_glance_' are "
        "reserved for Glance's own use and cannot hold images. Set "
        "default_backend to one of your stores: cheap, fast." % store))


@pytest.mark.parametrize('first, second', [
    ('cheap', STAGING), ('fast', TASKS), (STAGING, TASKS)])
def test_shared_datadir_is_refused(refusal, first, second):
    shared = datadir(refusal, first)
    refusal.sections[second]['filesystem_store_datadir'] = shared
    assert_refused(refusal, (
        "The stores %(a)s and %(b)s must not share files: "
        "[%(a)s]/filesystem_store_datadir = %(p)s and "
        "[%(b)s]/filesystem_store_datadir = %(p)s are the same directory."
        % {'a': first, 'b': second, 'p': shared}))


def test_reserved_datadir_inside_an_operator_store_is_refused(refusal):
    inside = os.path.join(datadir(refusal, 'fast'), 'staging')
    refusal.sections[STAGING]['filesystem_store_datadir'] = inside
    assert_refused(refusal, (
        "The stores fast and %(b)s must not share files: "
        "[fast]/filesystem_store_datadir = %(a)s and "
        "[%(b)s]/filesystem_store_datadir = %(p)s lie one inside the "
        "other." % {'a': datadir(refusal, 'fast'), 'b': STAGING,
                    'p': inside}))


def test_reserved_store_without_datadir_is_refused(refusal):
    del refusal.sections[TASKS]
    assert_refused(refusal, (
        "The reserved store %s has no filesystem_store_datadir" % TASKS))


@pytest.mark.parametrize('store', [STAGING, TASKS])
def test_relative_reserved_datadir_is_refused(refusal, store):
    # glance-api runs in the layout's base directory: a relative path
    # would have been resolved against it.
    refusal.sections[store]['filesystem_store_datadir'] = 'relative-dir'
    assert_refused(refusal, (
        "Invalid value 'relative-dir' for [%s]/filesystem_store_datadir in "
        "glance-api.conf: the path is relative, so the directory would "
        "depend on the working directory glance-api happens to be started "
        "in. Set filesystem_store_datadir to an absolute path to a "
        "directory used by no other store, for example:" % store))
    assert not os.path.exists(os.path.join(refusal.layout.base,
                                           'relative-dir'))


@pytest.mark.parametrize('where, reason', [
    ('in-the-way/staging',
     'glance_store could not create it or write to it (see its warning '
     'above)'),
    ('in-the-way', 'it is not a directory')])
def test_reserved_store_that_cannot_keep_files_is_refused(refusal, tmpdir,
                                                          where, reason):
    # A regular file stands where the staging store's directory, or one
    # of its parents, should be.
    tmpdir.join('in-the-way').write('not a directory')
    path = os.path.join(str(tmpdir), where)
    refusal.sections[STAGING]['filesystem_store_datadir'] = path
    code, output, log = refusal.run()
    assert code == glance_demo.EXIT_RESERVED_STORE_CONFIG, (code, output)
    message = ("The reserved store %s cannot keep files in "
               "[%s]/filesystem_store_datadir = %s: %s. Point the option "
               "at a directory that the user glance-api runs as can create "
               "or write to." % (STAGING, STAGING, path, reason))
    assert 'ERROR: ' + message in output
    assert message in log
    assert tmpdir.join('in-the-way').read() == 'not a directory'
