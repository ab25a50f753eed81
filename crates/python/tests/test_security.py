"""Isolation and the trust boundary, seen through the Python face.

Each probe is a decorated function. Where it makes sense the same probe is also run on the
host (``probe.__wrapped__``, the undecorated function) to show it *would* succeed there — so
a passing test means the sandbox stopped it, not that the probe was broken.
"""

import os
import pickle
import socket
import threading
import time
import uuid

import pytest

import airlock


@airlock.sandbox
def read_env(name):
    import os

    return os.environ.get(name), sorted(os.environ)


def test_host_environment_is_not_visible():
    name = "AIRLOCK_PY_TEST_SECRET"
    os.environ[name] = "s3cr3t-" + uuid.uuid4().hex
    try:
        assert read_env.__wrapped__(name)[0] == os.environ[name]  # control: visible on the host
        value, names = read_env(name)
        assert value is None
        assert name not in names
        assert not any("s3cr3t" in n for n in names)
        assert "AWS_SECRET_ACCESS_KEY" not in names and "HOME" in names
    finally:
        del os.environ[name]


@airlock.sandbox
def try_read(path):
    try:
        with open(path) as f:
            return "read: " + f.read()
    except OSError as e:
        return f"{type(e).__name__}: {e.errno}"


def test_host_ssh_marker_is_not_readable():
    ssh = os.path.expanduser("~/.ssh")
    created_dir = not os.path.isdir(ssh)
    os.makedirs(ssh, mode=0o700, exist_ok=True)
    marker = os.path.join(ssh, f"airlock-py-marker-{uuid.uuid4().hex}")
    with open(marker, "w") as f:
        f.write("private key\n")
    try:
        assert try_read.__wrapped__(marker) == "read: private key\n"  # control
        got = try_read(marker)
        assert got.startswith(("FileNotFoundError", "PermissionError")), got
    finally:
        os.unlink(marker)
        if created_dir:
            os.rmdir(ssh)


def test_host_tmp_marker_is_not_visible(marker_tmp):
    @airlock.sandbox
    def look(path):
        import os

        return os.path.exists(path), sorted(os.listdir("/tmp"))

    assert look.__wrapped__(marker_tmp)[0] is True  # control
    exists, listing = look(marker_tmp)
    assert exists is False
    assert os.path.basename(marker_tmp) not in listing


def test_hostname_is_the_sandbox_s_own():
    @airlock.sandbox
    def hostname():
        import socket

        return socket.gethostname()

    assert hostname() == "sandbox"
    assert socket.gethostname() != "sandbox"


def test_setuid_root_fails():
    @airlock.sandbox
    def become_root():
        import os

        out = {"uid": os.getuid(), "euid": os.geteuid()}
        try:
            os.setuid(0)
            out["setuid"] = "succeeded"
        except OSError as e:
            out["setuid"] = e.errno
        return out

    got = become_root()
    assert got["uid"] != 0 and got["euid"] != 0
    import errno

    # EPERM (no capability) or EINVAL (uid 0 is not even mapped into the sandbox).
    assert got["setuid"] in (errno.EPERM, errno.EINVAL), got


@airlock.sandbox
def network_probe(tcp_port, nameserver):
    import http.client
    import socket
    import ssl

    out = {}
    try:
        socket.create_connection(("127.0.0.1", tcp_port), timeout=2).close()
        out["tcp"] = "connected"
    except OSError as e:
        out["tcp"] = type(e).__name__
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect((nameserver, 53))  # a UDP connect sends nothing: it only needs a route
        out["udp_route"] = "routed"
        s.close()
    except OSError as e:
        out["udp_route"] = type(e).__name__
    try:
        socket.getaddrinfo("example.com", 443)
        out["dns"] = "resolved"
    except OSError as e:
        out["dns"] = type(e).__name__
    try:
        conn = http.client.HTTPSConnection("127.0.0.1", tcp_port, timeout=2, context=ssl.create_default_context())
        conn.request("GET", "/")
        out["https"] = "answered"
    except (OSError, ssl.SSLError) as e:
        out["https"] = type(e).__name__
    return out


def _host_nameserver():
    try:
        with open("/etc/resolv.conf") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver" and "." in parts[1]:
                    return parts[1]
    except OSError:
        pass
    return "127.0.0.53"


def test_tcp_dns_and_https_fail_under_the_default_network():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = listener.accept()
                c.close()
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    ns = _host_nameserver()
    try:
        host = network_probe.__wrapped__(port, ns)  # control: the host reaches both
        assert host["tcp"] == "connected" and host["udp_route"] == "routed"
        got = network_probe(port, ns)
    finally:
        stop.set()
        t.join()
        listener.close()
    assert got["tcp"] != "connected", got
    assert got["udp_route"] != "routed", got
    assert got["dns"] != "resolved", got
    assert got["https"] != "answered", got


def test_timeout_raises_within_about_the_limit():
    @airlock.sandbox(timeout=2)
    def sleepy():
        import time

        time.sleep(10)
        return "woke"

    t = time.monotonic()
    with pytest.raises(airlock.SandboxTimeoutError) as e:
        sleepy()
    elapsed = time.monotonic() - t
    assert 1.9 <= elapsed < 4.5, elapsed
    assert isinstance(e.value, airlock.SandboxExecutionError)
    assert "timeout" in str(e.value)


def test_memory_bomb_raises_memory_error_and_the_host_survives():
    @airlock.sandbox(memory_mb=128)
    def bomb():
        chunks = []
        while True:
            chunks.append(bytearray(16 << 20))

    with pytest.raises((MemoryError, airlock.SandboxMemoryError)) as e:
        bomb()
    assert isinstance(e.value, airlock.SandboxMemoryError)
    assert "memory" in str(e.value).lower()

    @airlock.sandbox(memory_mb=128)
    def fine():
        return len(bytearray(16 << 20))

    assert fine() == 16 << 20  # the engine (and this process) carry on


def test_state_set_by_one_call_is_invisible_to_the_next():
    @airlock.sandbox
    def plant_or_probe(plant):
        import builtins
        import json
        import os
        import sys

        if plant:
            builtins.AIRLOCK_PLANTED = 1
            json.AIRLOCK_PLANTED = 1
            sys.modules["airlock_planted"] = json
            os.environ["AIRLOCK_PLANTED"] = "1"
            open("/tmp/airlock_planted", "w").write("x")
            open("/workspace/airlock_planted", "w").write("x")
            import subprocess

            subprocess.Popen(["sleep", "60"])
        return [
            hasattr(builtins, "AIRLOCK_PLANTED"),
            hasattr(json, "AIRLOCK_PLANTED"),
            "airlock_planted" in sys.modules,
            "AIRLOCK_PLANTED" in os.environ,
            os.path.exists("/tmp/airlock_planted"),
            os.path.exists("/workspace/airlock_planted"),
            len([p for p in os.listdir("/proc") if p.isdigit()]),
        ]

    planted = plant_or_probe(True)
    assert planted[:6] == [True] * 6 and planted[6] >= 3
    for _ in range(3):
        assert plant_or_probe(False) == [False] * 6 + [2]  # the sandbox's init and itself


# ---------------------------------------------------------------------------------------------
# The trust boundary: nothing from the sandbox is unpickled on the host


class RunsOnUnpickle:
    """Unpickling this runs a shell command (``__reduce__``)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_returned_object_whose_reduce_runs_a_command_does_not_run_it(tmp_path):
    marker = str(tmp_path / "pwned")
    # Control: unpickling such an object on the host does run the command.
    pickle.loads(pickle.dumps(RunsOnUnpickle(marker)))
    assert os.path.exists(marker)
    os.unlink(marker)

    @airlock.sandbox
    def evil(m):
        return RunsOnUnpickle(m)

    with pytest.raises(airlock.SerializationError) as e:
        evil(marker)
    assert "RunsOnUnpickle" in str(e.value)
    assert not os.path.exists(marker)


def test_a_forged_pickle_written_to_the_result_channel_is_not_loaded(tmp_path):
    marker = str(tmp_path / "pwned")

    @airlock.sandbox
    def forge(m, with_header):
        import os
        import pickle

        payload = pickle.dumps(RunsOnUnpickle(m))
        if with_header:
            payload = b"AIRLOCK1V" + payload
        # The runner keeps its own private copy of the channel: write to every descriptor
        # that could be it, as a hostile function would.
        for cand in range(3, 64):
            try:
                os.write(cand, payload)
            except OSError:
                pass
        os._exit(0)

    for with_header in (False, True):
        with pytest.raises(airlock.SandboxError):
            forge(marker, with_header)
        assert not os.path.exists(marker)


def test_text_from_the_sandbox_cannot_drive_the_terminal():
    @airlock.sandbox
    def escapes():
        raise RuntimeError("\x1b]0;pwned\x07\x1b[2Jcleared")

    with pytest.raises(RuntimeError) as e:
        escapes()
    assert "\x1b" not in str(e.value) and "\x07" not in str(e.value)
    assert "\\x1b" in str(e.value)
