"""mod_jk2, Apache 2.0's Tomcat connector: how its log calls are read, how its lines are
framed in Apache 2.0's error_log and how its messages are labelled."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from nanomodel import realtext
from nanomodel.harvest import run
from nanomodel.harvest.sources import SOURCES


def test_jklog_levels_follow_the_apache2_logger(tmp_path: Path) -> None:
    """jk_logger_apache2.c passes JK_LOG_INFO to Apache as notice and JK_LOG_ERROR and
    JK_LOG_EMERG as error; JK_LOG_DEBUG and APLOG_DEBUG are debug output; the trailing
    newline of jkLog's formats is not part of the message."""
    (tmp_path / "mod_jk2_2.0.5-dev.upstream").write_text("Version: 2.0.5-dev\n")
    base = tmp_path / "mod_jk2-abc1234" / "jk" / "native2"
    (base / "common").mkdir(parents=True)
    (base / "server" / "apache2").mkdir(parents=True)
    (base / "common" / "jk_worker_lb.c").write_text(
        "static int service(jk_env_t *env)\n{\n"
        '    env->l->jkLog(env, env->l, JK_LOG_INFO, "lb.getWorker() We tried all %d\\n", n);\n'
        '    env->l->jkLog(env, env->l, JK_LOG_ERROR, "lb.service() worker failed %d\\n", r);\n'
        '    env->l->jkLog(env, env->l, JK_LOG_EMERG, "Unable to create global pool\\n");\n'
        '    env->l->jkLog(env, env->l, JK_LOG_DEBUG, "lb.service() try worker %s\\n", n);\n'
        "}\n"
    )
    (base / "common" / "jk_worker_jni.c").write_text(
        'void f(void) { env->l->jkLog(env, env->l, JK_LOG_ERROR, "jni worker failed\\n"); }\n'
    )
    (base / "server" / "apache2" / "mod_jk2.c").write_text(
        "static const char *jk2_set2(cmd_parms *cmd)\n{\n"
        "    ap_log_perror(APLOG_MARK, APLOG_NOTICE, 0, cmd->temp_pool,\n"
        '                  "mod_jk2: Unrecognized option %s %s", name, value);\n'
        '    ap_log_perror(APLOG_MARK, APLOG_DEBUG, 0, p, "mod_jk2 Merging workerEnv");\n'
        "}\n"
    )
    (src,) = [s for s in SOURCES if s.source == "mod_jk2"]
    got = {r["template"]: r["level"] for r in run.harvest_source(tmp_path, src)}
    assert got == {
        "lb.getWorker() We tried all %d": "notice",
        "lb.service() worker failed %d": "error",
        "Unable to create global pool": "error",
        "mod_jk2: Unrecognized option %s %s": "notice",
    }


def test_lines_are_framed_as_apache_2_0_writes_its_error_log() -> None:
    lines = realtext.real_lines(
        random.Random(5), per_template=4, sources=["mod_jk2"], captured=False
    )
    assert {s for _, _, s in lines} == {"mod_jk2"}
    framed = [t for t, _, _ in lines if t.startswith("[")]
    assert framed
    for text in framed:  # [Sun Dec 04 04:51:08 2005] [notice] <message>, no module tag
        assert re.match(r"\[\w{3} \w{3} \d\d \d\d:\d\d:\d\d \d{4}\] \[(notice|error)\] \S", text)
    found = [t for t, _, _ in lines if "Found child" in t and t.startswith("[")]
    assert found and all("] [notice] jk2_init() Found child " in t for t in found)
    failed = [t for t, _, _ in lines if "Error connecting to tomcat" in t and t.startswith("[")]
    assert failed and all("] [error] mod_jk2.handler() Error" in t for t in failed)
    assert not [t for t, _, _ in lines if "%{" in t or "%pI" in t]


@pytest.mark.parametrize(
    ("template", "label"),
    [
        # start-up routine
        ("jk2_init() Found child %d in scoreboard slot %d", "normal"),
        ("workerEnv.init() ok %s", "normal"),
        ("jk2_init() Can't find child %d in any of the %d scoreboard slots", "normal"),
        ("lb.getWorker() reenable %s", "normal"),
        # Tomcat unreachable or failing: requests fail
        ("channelApr.open() attempt to connect to %pI (%s) failed %d", "network"),
        ("ajp13.service() failed to connect endpoint errno=%d %s", "network"),
        ("lb_worker.service() all workers in error or disabled state", "network"),
        ("mod_jk2.handler() Error connecting to tomcat %d, status %d", "network"),
        ("workerEnv.processCallbacks() no reply after %d ms waiting", "network"),
        # configuration
        ("uriEnv.init() map to invalid worker %s %s", "software"),
        ("msgAjp.receive(): Bad signature %x%x", "software"),
        ("handler.logonFailure() code %08lx", "security"),
        # the client's side
        ("mod_jk2.handler() Can't setup client block %d", "normal"),
        ("uriMap.mapUri() no context %s", "normal"),
    ],
)
def test_mod_jk2_messages_carry_a_technicians_label(template: str, label: str) -> None:
    by_template = {t.template: t for t in realtext.load_templates(["mod_jk2"])}
    assert template in by_template, f"mod_jk2 lost {template!r}: re-harvest or fix the test"
    assert by_template[template].label == label, by_template[template].reason


def test_sanity_checks_are_kept_out() -> None:
    jk2 = {t.template: t for t in realtext.load_templates(["mod_jk2"])}
    assert jk2["ajp13.service() NullPointerException"].not_log_text
    assert not jk2["ajp13.connect() failed %s"].not_log_text
