"""LocalStack set-up logic that needs no LocalStack: the kinesis-mock bind patch, error messages,
interpreter discovery, /proc address decoding and the refusal to start anything but 127.0.0.1."""

from __future__ import annotations

import json
import sys

import pytest

from servingkit.localcloud import localstack as ls

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


@pytest.mark.parametrize(
    ("hex_host", "address"),
    [
        ("0100007F", "127.0.0.1"),
        ("00000000", "0.0.0.0"),
        ("00000000000000000000000001000000", "::1"),
        ("00000000000000000000000000000000", "::"),
    ],
)
def test_proc_net_addresses_are_decoded(hex_host, address):
    assert ls._proc_address(hex_host) == address


def test_this_process_listening_on_loopback_is_not_exposed():
    import os
    import socket

    with socket.socket() as server:
        server.bind((ls.LOCALHOST, 0))
        server.listen()
        port = server.getsockname()[1]
        assert (ls.LOCALHOST, port) in ls.listening_sockets(os.getpid())
        assert (ls.LOCALHOST, port) not in ls.exposed_listeners(os.getpid())


def test_ensure_running_never_starts_anything_but_loopback():
    # Nothing answers at 127.0.0.2:9, and an address other than 127.0.0.1 is never started here.
    with pytest.raises(ls.LocalStackError, match=r"only 127\.0\.0\.1 can be started"):
        ls.ensure_running("http://127.0.0.2:9")


def test_install_without_node_says_kinesis_mock_needs_it(monkeypatch, tmp_path):
    real_which = ls.shutil.which
    monkeypatch.setattr(ls.shutil, "which", lambda name, *a, **k: None if name == "node" else real_which(name))

    with pytest.raises(ls.LocalStackError, match=r"needs Node\.js"):
        ls.install(ls.Layout(tmp_path))
    assert not ls.is_installed(ls.Layout(tmp_path))
