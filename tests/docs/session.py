"""Run a document's ```bash blocks in order as one shell session, the way a reader pastes them.

Each block runs in `bash` with `set -eo pipefail` (every command must succeed); what a block leaves
behind (its variables, exported or not, its functions and its working directory) is saved after it and
restored before the next one, so `VAR=$(...)` in one block is seen by the next. A failure names the
document line of the failing command and carries the block's output.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.docs.blocks import Block

# Bash's own variables: never carried from one block to the next.
_BASH_OWN = (
    "BASH* PWD OLDPWD SHLVL _ PIPESTATUS FUNCNAME RANDOM SRANDOM SECONDS LINENO EPOCHREALTIME EPOCHSECONDS "
    "HISTCMD HISTFILE COLUMNS LINES PPID UID EUID GROUPS SHELLOPTS IFS OPTIND OPTARG OPTERR DIRSTACK HOSTNAME "
    "HOSTTYPE MACHTYPE OSTYPE PS4 COMP_WORDBREAKS"
)

PROLOGUE = """\
[ -f "$DOCS_STATE" ] && . "$DOCS_STATE"
cd "${DOCS_PWD:-$DOCS_ROOT}"
trap 'echo "docs-tier: line $((DOCS_LINE + LINENO)): exit $?: $BASH_COMMAND" >&2' ERR
set -Eeo pipefail
"""

EPILOGUE = """\
set +e; trap - ERR
DOCS_PWD=$PWD
{
  for v in $(compgen -v); do
    case " @BASH_OWN@ " in *" $v "*) continue;; esac
    case "$v" in BASH*|DOCS_STATE|DOCS_ROOT|DOCS_LINE) continue;; esac
    declare -p "$v" 2>/dev/null
  done
  declare -f
} > "$DOCS_STATE.new" && mv "$DOCS_STATE.new" "$DOCS_STATE"
""".replace("@BASH_OWN@", _BASH_OWN.replace("BASH* ", ""))


@dataclass
class Outcome:
    block: Block
    ok: bool
    output: str
    seconds: float

    def report(self) -> str:
        return f"{self.block.where}: {'ok' if self.ok else 'FAILED'} ({self.seconds:.1f} s)\n{self.output}"


class Session:
    """One document's shell session in `root` with environment `env`."""

    def __init__(self, root: Path, env: dict[str, str], state: Path, *, timeout: float = 300) -> None:
        self.root, self.state, self.timeout = root, state, timeout
        self.env = {**env, "DOCS_STATE": str(state), "DOCS_ROOT": str(root)}

    def _script(self, code: str, first_line: int) -> str:
        # DOCS_LINE + LINENO = the document's line: the code starts after DOCS_LINE's line and the prologue.
        offset = first_line - PROLOGUE.count("\n") - 2
        return f"DOCS_LINE={offset}\n" + PROLOGUE + code + ("" if code.endswith("\n") else "\n") + EPILOGUE

    def _bash(self, code: str, first_line: int, timeout: float) -> tuple[int, str]:
        script = self._script(code, first_line)
        try:
            done = subprocess.run(
                ["bash", "-c", script],
                cwd=self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            return 124, out + f"\ndocs-tier: timed out after {timeout:.0f} s"
        return done.returncode, done.stdout

    def run(self, block: Block) -> Outcome:
        started = time.monotonic()
        if block.background is not None:
            code, out = self._with_server(block)
        else:
            code, out = self._bash(block.script(), block.line + 1, self.timeout)
        ok = code == 0
        if block.fails is not None:
            ok = code != 0 and block.fails in out
            out += f"\ndocs-tier: expected a failure mentioning {block.fails!r}: exit {code}"
        return Outcome(block, ok, out, time.monotonic() - started)

    def _with_server(self, block: Block) -> tuple[int, str]:
        assert block.background is not None
        server, rest = block.split_server()
        log = self.state.with_suffix(f".server-{block.line}.log")
        script = self._script(server, block.line + 1).replace(EPILOGUE, "")
        with log.open("w") as server_log:
            proc = subprocess.Popen(
                ["bash", "-c", script],
                cwd=self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=server_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            if not _wait_for_port(block.background, proc, self.timeout):
                return 1, log.read_text() + f"\ndocs-tier: nothing listened on 127.0.0.1:{block.background}"
            code, out = self._bash(rest, block.line + 1 + server.count("\n"), self.timeout) if rest.strip() else (0, "")
        finally:
            _stop(proc)
        return code, f"[server: {server.strip()}]\n{log.read_text()}\n[commands]\n{out}"


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.25)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Ctrl-C to the server's process group (it was started in its own session), then TERM, then KILL."""
    for sig, wait in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
