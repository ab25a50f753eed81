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
import errno as _errno
import linecache as _linecache
import os as _os
import socket as _socket
import stat as _stat
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

    def receive(n):
        # The next n bytes of the socket, a chunk at a time (never all of a file at once).
        while n > 0:
            chunk = sock.recv(min(n, 1 << 20))
            if not chunk:
                _os._exit(0)  # the supervisor closed the session
            n -= len(chunk)
            yield chunk

    def read_exactly(n):
        return b"".join(receive(n))

    def reply(kind, payload=b""):
        sock.sendall(kind + len(payload).to_bytes(8, "big") + payload)

    def where(raw):
        name = raw.decode("utf-8", "surrogateescape")
        return name if name.startswith("/") else _os.path.join("/workspace", name)

    def open_regular(target, flags):
        # Not blocking on a FIFO, and only ever a regular file (not a FIFO, a device or a
        # socket, whose reads may never end).
        try:
            fd = _os.open(target, flags | _os.O_NONBLOCK | _os.O_CLOEXEC, 0o644)
        except OSError as e:
            if e.errno == _errno.ENXIO:  # a FIFO no one reads
                raise OSError("not a regular file") from None
            raise
        try:
            if not _stat.S_ISREG(_os.fstat(fd).st_mode):
                raise OSError("not a regular file")
            _os.set_blocking(fd, True)
        except BaseException:
            _os.close(fd)
            raise
        return fd

    def write_all(fd, data):
        view = memoryview(data)
        while view:
            view = view[_os.write(fd, view):]

    def write_file(size):
        # The path up to its NUL, then the data straight into the file as it comes. Whatever
        # fails, the rest of the frame is read, so that the next one is read whole.
        chunks = receive(size)
        head = b""
        for chunk in chunks:
            head += chunk
            if b"\0" in head or len(head) > 8192:
                break
        name, _, first = head.partition(b"\0")
        try:
            target = where(name)
            parent = _os.path.dirname(target)
            if parent:
                _os.makedirs(parent, exist_ok=True)
            fd = open_regular(target, _os.O_WRONLY | _os.O_CREAT | _os.O_TRUNC)
            try:
                write_all(fd, first)
                for chunk in chunks:
                    write_all(fd, chunk)
            finally:
                _os.close(fd)
        finally:
            for _ in chunks:
                pass
        reply(b"K")

    def read_file(name):
        # Read whole before anything is sent: what is sent is what was read (a file that
        # changes meanwhile, or one whose size says 0 as /proc's do), and a failure is still
        # an E frame, never one in the middle of the data.
        fd = open_regular(where(name), _os.O_RDONLY)
        try:
            chunks, size = [], 0
            while True:
                chunk = _os.read(fd, 1 << 20)
                if not chunk:
                    break
                size += len(chunk)
                if size > _AIRLOCK_FILE_LIMIT:
                    raise OSError(f"larger than {_AIRLOCK_FILE_LIMIT} bytes")
                chunks.append(chunk)
        finally:
            _os.close(fd)
        sock.sendall(b"D" + size.to_bytes(8, "big"))
        for chunk in chunks:
            sock.sendall(chunk)

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
        if kind == b"C" and len(fds) == 2 and size >= 8:
            run(read_exactly(size), fds[0], fds[1])
            continue
        for fd in fds:
            _os.close(fd)
        try:
            if kind == b"W":
                write_file(size)
            elif kind == b"F":
                read_file(read_exactly(size))
            else:
                _os._exit(125)  # not our protocol: end the session
        except OSError as e:
            why = f"{e.strerror or e}"[:1000]
            reply(b"E", why.encode("utf-8", "replace"))

_airlock_session()
