"""glance-api refuses to start when its stores break a reserved-store rule.

Each test breaks the demo's configuration in one way, starts glance-api
and checks what the operator sees: the exit code (6, for a reserved-store
configuration error), the error on stderr and in the log, and that no
store was created.

A reserved store left without a directory is not a broken configuration:
it gets /var/lib/glance/<store name>, as in later releases.  No test
writes there: glance-api is run with a directory of the test's own
mounted on /var/lib, in a mount namespace of its own, or refuses before
it creates anything.
"""

import os
import subprocess

import pytest

import glance_demo
import glance_http

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


def private_var_lib(var_lib):
    """A command prefix that runs a command with var_lib as its /var/lib.

    The command runs in a mount namespace of its own, in which var_lib is
    mounted on /var/lib: nothing else sees it, and nothing is written to
    the real /var/lib.  The test fails, saying why, when the system allows
    no mount namespace (unshare, as root or in a user namespace): it is
    never skipped.
    """
    script = 'mount --bind "$0" /var/lib && exec "$@"'
    candidates = []
    if os.geteuid() == 0:
        candidates.append(['unshare', '--mount'])
    candidates.append(['unshare', '--user', '--map-root-user', '--mount'])
    errors = []
    for prefix in candidates:
        cmd = prefix + ['sh', '-c', script, var_lib]
        try:
            probe = subprocess.run(cmd + ['ls', '/var/lib'],
                                   stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT,
                                   universal_newlines=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            errors.append('%s: %s' % (' '.join(prefix), e))
            continue
        if probe.returncode == 0 and probe.stdout.split() == sorted(
                os.listdir(var_lib)):
            return cmd
        errors.append('%s: %s' % (' '.join(prefix), probe.stdout.strip()))
    pytest.fail('no private /var/lib for glance-api, and a test must not '
                'write to the real one: %s' % '; '.join(errors))


def default_message(store):
    return ('WARNING glance.common.reserved_stores [-] The reserved store '
            '%(s)s keeps its files in /var/lib/glance/%(s)s, its default '
            'directory: [%(s)s]/filesystem_store_datadir is not set and the '
            'deprecated %(opt)s gives no absolute path to take it from.'
            % {'s': store, 'opt': {STAGING: '[DEFAULT]/node_staging_uri',
                                   TASKS: '[task]/work_dir'}[store]})


@pytest.mark.parametrize('unset', [TASKS, STAGING])
def test_unset_reserved_store_gets_its_default_directory(refusal, tmpdir,
                                                         unset):
    # A configuration for later releases, which may configure only
    # [os_glance_staging_store], starts; so does one without it.
    real_default = '/var/lib/glance/' + unset
    existed = os.path.exists(real_default)
    var_lib = str(tmpdir.mkdir('var-lib'))
    wrapper = private_var_lib(var_lib)
    del refusal.sections[unset]
    layout = refusal.layout
    glance_demo.write_config(layout, refusal.sections, refusal.tree)
    glance_demo.db_sync(refusal.python, layout)
    port = int(refusal.sections['DEFAULT']['bind_port'])
    api = glance_demo.GlanceApi(refusal.python, layout, port,
                                wrapper=wrapper)
    default = os.path.join(var_lib, 'glance', unset)
    staging = default if unset == STAGING else layout.datadirs[STAGING]
    api.start()
    try:
        glance = glance_http.Glance(api.url)
        resp = glance.request('GET', '/v2/info/stores')
        assert resp.status_code == 200, resp.text
        assert sorted(s['id'] for s in resp.json()['stores']) == [
            'cheap', 'fast']
        # Data goes through the staging store, wherever it is.
        image_id = glance.create_image('default-datadir')['id']
        data = os.urandom(1 << 20)
        resp = glance.stage(image_id, data)
        assert resp.status_code == 204, resp.text
        assert os.listdir(staging) == [image_id]
        image, seen = glance.import_and_wait(image_id, store='cheap')
        assert image['status'] == 'active', seen
        assert glance_http.settled(lambda: os.listdir(staging), []) == []
        assert os.listdir(layout.datadirs['cheap']) == [image_id]
    finally:
        api.stop()
    assert os.listdir(os.path.join(var_lib, 'glance')) == [unset]
    assert os.path.isdir(default)
    assert not os.path.exists(layout.datadirs[unset])
    with open(layout.log, errors='replace') as f:
        log = f.read()
    assert default_message(unset) in log
    assert ('With several glance-api nodes, the staging directory must be '
            'one they all share.' in log) == (unset == STAGING)
    other = STAGING if unset == TASKS else TASKS
    assert 'The reserved store %s keeps its files' % other not in log
    assert 'ERROR' not in log
    assert os.path.exists(real_default) == existed


def test_default_directory_inside_an_operator_store_is_refused(refusal):
    # The store cheap holds /var/lib/glance, and so the tasks store's
    # default directory: refused before any store is created, so that
    # nothing is written to /var/lib.
    default = '/var/lib/glance/' + TASKS
    existed = os.path.exists(default)
    del refusal.sections[TASKS]
    refusal.sections['cheap']['filesystem_store_datadir'] = '/var/lib/glance'
    log = assert_refused(refusal, (
        "The stores cheap and %(t)s must not share files: "
        "[cheap]/filesystem_store_datadir = /var/lib/glance and "
        "[%(t)s]/filesystem_store_datadir = %(d)s lie one inside the other. "
        "Give each filesystem store a directory of its own in "
        "glance-api.conf." % {'t': TASKS, 'd': default}))
    # The log says first which directory was chosen.
    assert default_message(TASKS) in log
    assert log.index(default_message(TASKS)) < log.index('ERROR glance')
    assert os.path.exists(default) == existed


def test_default_directory_that_cannot_be_created_is_refused(refusal,
                                                             tmpdir):
    # In glance-api's /var/lib, a regular file stands where the directory
    # glance should be.
    var_lib = tmpdir.mkdir('var-lib')
    var_lib.join('glance').write('not a directory')
    wrapper = private_var_lib(str(var_lib))
    del refusal.sections[TASKS]
    code, output, log = refusal.run(wrapper=wrapper)
    assert code == glance_demo.EXIT_RESERVED_STORE_CONFIG, (code, output)
    message = ("The reserved store %(t)s cannot keep files in "
               "[%(t)s]/filesystem_store_datadir = /var/lib/glance/%(t)s: "
               "glance_store could not create it or write to it (see its "
               "warning above). Point the option at a directory that the "
               "user glance-api runs as can create or write to."
               % {'t': TASKS})
    assert 'ERROR: ' + message in output
    assert message in log
    assert default_message(TASKS) in log
    assert var_lib.join('glance').read() == 'not a directory'


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
