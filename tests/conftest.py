import io
import json
import os
import sys
import threading
from contextlib import redirect_stderr, redirect_stdout
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_openai import FakeOpenAI, handler  # noqa: E402
from packmaker import make_pack  # noqa: E402

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# precision=auto follows the hardware (scaling.fast_bf16); the suite pins the answer to "no fast bf16"
# so that its runs are fp32, and the same, on every machine (subprocesses inherit it too).
os.environ.setdefault("SNAP_BENCH_FAST_BF16", "0")


class CliResult:
    def __init__(self, code, out, err):
        self.code, self.out, self.err = code, out, err

    @property
    def json(self):
        return json.loads(self.out)


@pytest.fixture
def cli():
    """Run ``snap-bench ARGS`` in-process; returns exit code, stdout and stderr."""
    from snap_bench.cli import main

    def run(*args):
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main([str(a) for a in args])
        return CliResult(code, out.getvalue(), err.getvalue())

    return run


@pytest.fixture(scope="session")
def tiny():
    from snap_bench.models import load_model

    return load_model("tiny-random")


@pytest.fixture
def pack_dir(tmp_path):
    return make_pack(tmp_path / "packs")


@pytest.fixture
def openai_server(monkeypatch):
    """The one fake OpenAI-compatible server of the suite: ``start(state) -> base_url`` serves a
    :class:`fake_openai.FakeOpenAI` (whose subclass scripts the replies) at ``http://127.0.0.1:PORT/v1`` on
    a free local port, bypassing any proxy; every server started is shut down after the test."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    servers = []

    def start(state: FakeOpenAI) -> str:
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler(state))
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/v1"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()
