"""LocalStack set-up logic that needs no LocalStack: the kinesis-mock bind patch, error messages,
interpreter discovery, the process tree and its listeners (psutil) and the refusal to start anything but 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys

import pytest

from servingkit.localcloud import localstack as ls
from servingkit.localcloud import processes
from servingkit.localcloud.emulator import LOCALHOST

BUNDLE = 'var a=1;return K8a(bc(),mja().Ce("0.0.0.0"),new x(()=>Mm("Invalid hostname")));var b=2;'


def test_kinesis_mock_patch_binds_loopback_once_and_is_idempotent(tmp_path):
    main_js = tmp_path / "main.js"
    main_js.write_text(BUNDLE)

    assert ls.patch_kinesis_mock(main_js) is True
    assert main_js.read_text() == BUNDLE.replace('"0.0.0.0"', '"127.0.0.1"')
    assert ls.patch_kinesis_mock(main_js) is False
    assert main_js.read_text().count('"127.0.0.1"') == 1


@pytest.mark.parametrize("text", [BUNDLE + BUNDLE, "no bind address at all"])
def test_kinesis_mock_patch_refuses_an_unknown_bundle(tmp_path, text):
    main_js = tmp_path / "main.js"
    main_js.write_text(text)

    with pytest.raises(ls.LocalStackError, match="not supported"):
        ls.patch_kinesis_mock(main_js)
    assert main_js.read_text() == text


def test_a_failing_command_is_reported_with_its_command_line_and_output():
    cmd = [sys.executable, "-c", "import sys; print('pip said no'); sys.exit(3)"]

    with pytest.raises(ls.LocalStackError) as err:
        ls._run(cmd)
    assert "exited with 3" in str(err.value)
    assert "pip said no" in str(err.value)
    assert sys.executable in str(err.value)


def test_a_missing_python_313_names_what_was_tried_and_how_to_fix_it(monkeypatch, tmp_path):
    old = tmp_path / "python3.11"  # an interpreter of another minor: tried and rejected
    old.write_text("#!/bin/sh\necho 3 11\n")
    old.chmod(0o755)
    monkeypatch.setenv(ls.PYTHON_ENV, str(old))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))

    with pytest.raises(ls.LocalStackError) as err:
        ls.find_python()
    assert "needs Python 3.13" in str(err.value)
    assert str(old) in str(err.value)
    assert ls.PYTHON_ENV in str(err.value)


def test_an_empty_home_is_not_installed_and_a_stale_stamp_is_not_trusted(tmp_path):
    layout = ls.Layout(tmp_path)
    assert not ls.is_installed(layout)

    layout.python.parent.mkdir(parents=True)
    layout.python.touch()
    layout.stamp.write_text(json.dumps({"fingerprint": "an older pin set"}))
    assert not ls.is_installed(layout)


@pytest.mark.parametrize(("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_listening_addresses_are_reported_as_bound(family, host):
    with socket.socket(family) as server:
        try:
            server.bind((host, 0))
        except OSError:
            pytest.skip(f"{host} cannot be bound here")
        server.listen()
        port = server.getsockname()[1]
        assert (host, port) in processes.listening_sockets(os.getpid())


def test_wildcard_listeners_are_exposed_and_loopback_ones_are_not(monkeypatch):
    bound = [("0.0.0.0", 1), ("::", 2), ("127.0.0.1", 3), ("::1", 4)]
    monkeypatch.setattr(processes, "listening_sockets", lambda pid: bound)
    assert processes.exposed_listeners(0) == [("0.0.0.0", 1), ("::", 2)]


def test_this_process_listening_on_loopback_is_not_exposed():
    with socket.socket() as server:
        server.bind((LOCALHOST, 0))
        server.listen()
        port = server.getsockname()[1]
        assert (LOCALHOST, port) in processes.listening_sockets(os.getpid())
        assert (LOCALHOST, port) not in processes.exposed_listeners(os.getpid())


def test_a_killed_parent_leaves_no_child_behind():
    """What stop() does after a KILL: the tree taken before it, minus the root, is ended."""
    import subprocess

    spawn = "import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
    parent = subprocess.Popen(
        [sys.executable, "-c", spawn + " print(c.pid, flush=True); time.sleep(60)"], stdout=subprocess.PIPE
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        tree = processes.process_tree(parent.pid)
        assert set(tree) == {parent.pid, child}
        parent.kill()
        parent.wait(10)
        assert processes.survivors(tree) == [child]  # orphaned, as kinesis-mock would be
        processes.end_leftovers(tree, parent.pid, grace_s=5)
        assert processes.survivors(tree) == []
    finally:
        parent.kill()
        parent.wait()


def test_ensure_running_never_starts_anything_but_loopback():
    # Nothing answers at 127.0.0.2:9, and an address other than 127.0.0.1 is never started here.
    with pytest.raises(ls.LocalStackError, match=r"only 127\.0\.0\.1 can be started"):
        ls.ensure_running("http://127.0.0.2:9")


def test_install_without_node_says_kinesis_mock_needs_it(monkeypatch, tmp_path):
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "node" else real_which(name))

    with pytest.raises(ls.LocalStackError, match=r"needs Node\.js"):
        ls.install(ls.Layout(tmp_path))
    assert not ls.is_installed(ls.Layout(tmp_path))
