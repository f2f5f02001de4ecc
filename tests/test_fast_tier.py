"""The fast tier's rule (tests/conftest.py): a test marked unit may not start servers."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.unit

CONFTEST = Path(__file__).with_name("conftest.py")


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makeini("[pytest]\nmarkers =\n    unit: fast tier\n")
    return pytester


def test_a_unit_test_asking_for_a_broker_is_refused(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_x="import pytest\npytestmark = pytest.mark.unit\n\n"
                     "def test_uses_broker(broker):\n    pass\n")
    result = suite.runpytest_inprocess("-m", "unit")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "test_uses_broker is marked unit but starts broker" in str(result.stderr)


def test_a_server_asked_for_at_run_time_is_refused_too(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_z="import pytest\npytestmark = pytest.mark.unit\n\n"
                     "def test_late(request):\n    request.getfixturevalue('pg')\n")
    result = suite.runpytest_inprocess("-m", "unit")
    result.assert_outcomes(failed=1)  # during the call: getfixturevalue runs there
    assert "is marked unit but starts pg" in str(result.stdout)


def test_unit_tests_without_servers_run(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_y="import pytest\npytestmark = pytest.mark.unit\n\n"
                     "def test_pure(tmp_path):\n    assert tmp_path.is_dir()\n\n"
                     "def test_not_unit_uses_nothing_here():\n    pass\n")
    result = suite.runpytest_inprocess("-m", "unit")
    result.assert_outcomes(passed=2)
