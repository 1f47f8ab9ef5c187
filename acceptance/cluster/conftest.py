"""Fixtures of the cluster tests (see glance_cluster.py).

./series test cluster sets GLANCE_CLUSTER_DB_URL and GLANCE_HAPROXY;
without them every test fails, saying so: nothing is skipped.
"""

import os

import pytest


def _env(name, what):
    value = os.environ.get(name)
    if not value:
        pytest.fail('%s is not set to %s: run the cluster tests with '
                    './series test cluster' % (name, what), pytrace=False)
    return value


@pytest.fixture(scope='session')
def db_admin_url():
    return _env('GLANCE_CLUSTER_DB_URL',
                'the URL of a database server account that may create '
                'databases')


@pytest.fixture(scope='session')
def haproxy():
    return _env('GLANCE_HAPROXY', 'the haproxy program')
