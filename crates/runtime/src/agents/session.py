# airlock's in-sandbox agent for a Python session: one interpreter that serves call after call,
# so variables, imports, files and the working directory persist between them. It talks to the
# supervisor over the private control socket on descriptor 3, in frames of a kind byte and an
# 8-byte big-endian length, then the payload:
#   host -> agent  C id code    run it; the frame carries the call's stdout and stderr pipes
#                  W path\0data write a file (relative paths are under /workspace)
#                  F path       read a file
#   agent -> host  R            ready (one byte, once, no length)
#                  X id status  the call (its 8-byte id echoed) ended: its exit status, 4 bytes
#                  K            the file was written
#                  D data       the file's bytes
#                  E message    the file operation failed, and why
# The call's code shares this interpreter, so it can disturb this session's later calls (as in
# any notebook kernel); the supervisor treats every frame as untrusted and bounded, and nothing
# here reaches another session or the host.
import linecache as _linecache
import os as _os
import socket as _socket
import sys as _sys
import traceback as _traceback
import types as _types

_AIRLOCK_FILE_LIMIT = 64 << 20


def _airlock_session():
    sock = _socket.socket(fileno=3)
    _os.set_inheritable(3, False)  # not passed on to programs the calls start
    path = "/airlock/main.py"
    main = _types.ModuleType("__main__")
    main.__file__ = path
    main.__builtins__ = __builtins__
    _sys.modules["__main__"] = main
    _sys.argv = [path]
    _os.chdir("/workspace")

    def read_exactly(n):
        chunks, got = [], 0
        while got < n:
            chunk = sock.recv(min(n - got, 1 << 20))
            if not chunk:
                _os._exit(0)  # the supervisor closed the session
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def reply(kind, payload=b""):
        sock.sendall(kind + len(payload).to_bytes(8, "big") + payload)

    def where(raw):
        name = raw.decode("utf-8", "surrogateescape")
        return name if name.startswith("/") else _os.path.join("/workspace", name)

    def run(call, out, err):
        call_id, code = call[:8], call[8:]
        _airlock_flush_stdio()
        saved = (_os.dup(1), _os.dup(2))
        _os.dup2(out, 1)
        _os.dup2(err, 2)
        _os.close(out)
        _os.close(err)
        status = 0
        try:
            text = code.decode("utf-8", "surrogateescape")
            _linecache.cache[path] = (len(text), None, text.splitlines(True), path)
            exec(compile(code, path, "exec"), main.__dict__)
        except SystemExit as e:  # ends the call, not the session
            status = _airlock_exit_status(e)
        except BaseException as e:  # printed as the interpreter would, without this frame
            tb = e.__traceback__.tb_next if e.__traceback__ is not None else None
            try:
                _traceback.print_exception(type(e), e, tb)
            except BaseException:
                pass
            status = 1
        _airlock_flush_stdio()
        # The call's pipes close here (for this process): what it wrote is already in them.
        _os.dup2(saved[0], 1)
        _os.dup2(saved[1], 2)
        _os.close(saved[0])
        _os.close(saved[1])
        reply(b"X", call_id + (status & 0xFFFFFFFF).to_bytes(4, "big"))

    sock.sendall(b"R")
    while True:
        head, fds, _, _ = _socket.recv_fds(sock, 9, 2)
        if not head:
            _os._exit(0)
        head += read_exactly(9 - len(head)) if len(head) < 9 else b""
        kind, size = head[:1], int.from_bytes(head[1:9], "big")
        payload = read_exactly(size)
        if kind == b"C" and len(fds) == 2 and size >= 8:
            run(payload, fds[0], fds[1])
            continue
        for fd in fds:
            _os.close(fd)
        try:
            if kind == b"W":
                name, _, data = payload.partition(b"\0")
                target = where(name)
                parent = _os.path.dirname(target)
                if parent:
                    _os.makedirs(parent, exist_ok=True)
                with open(target, "wb") as f:
                    f.write(data)
                reply(b"K")
            elif kind == b"F":
                with open(where(payload), "rb") as f:
                    data = f.read(_AIRLOCK_FILE_LIMIT + 1)
                if len(data) > _AIRLOCK_FILE_LIMIT:
                    raise OSError(f"larger than {_AIRLOCK_FILE_LIMIT} bytes")
                reply(b"D", data)
            else:
                _os._exit(125)  # not our protocol: end the session
        except OSError as e:
            reply(b"E", f"{e.strerror or e}".encode("utf-8", "replace"))


_airlock_session()
