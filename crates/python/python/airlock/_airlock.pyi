"""Type stubs for ``airlock._airlock``, the Rust extension (private: use ``airlock``)."""

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

MAX_CODE_BYTES: int

class Request:
    """A validated run shape (everything but the code and input files)."""

    def __new__(
        cls,
        *,
        language: str = "python",
        timeout: float = 30.0,
        memory_mb: int = 512,
        network: str = "none",
        allowed_domains: Optional[Sequence[str]] = None,
        env: Optional[Mapping[str, str]] = None,
        packages: Optional[Sequence[str]] = None,
        trust_packages: bool = False,
        mounts: Optional[Sequence[Tuple[str, str, bool]]] = None,
        result_channel: bool = False,
        pids: Optional[int] = None,
        cpus: Optional[float] = None,
        stdout_limit: Optional[int] = None,
        stderr_limit: Optional[int] = None,
        tmp_mb: Optional[int] = None,
        allow_private: bool = False,
        weak_limits: bool = False,
        workdir: Optional[str] = None,
    ) -> "Request": ...
    @property
    def language(self) -> str: ...
    @property
    def timeout(self) -> float: ...
    @property
    def memory_mb(self) -> int: ...
    @property
    def network_none(self) -> bool: ...

class Pending:
    """A run started by ``Engine.submit``."""

    def cancel(self) -> None: ...

class Session:
    """A live session; each method reports through ``on_done(ok, value)``."""

    def run(
        self,
        code: bytes,
        on_done: Callable[[bool, Any], Any],
        timeout: Optional[float] = None,
        on_stdout: Optional[Callable[[bytes], Any]] = None,
        on_stderr: Optional[Callable[[bytes], Any]] = None,
    ) -> Pending: ...
    def write_file(self, path: str, data: bytes, on_done: Callable[[bool, Any], Any]) -> Pending: ...
    def read_file(self, path: str, on_done: Callable[[bool, Any], Any]) -> Pending: ...
    def close(self, on_done: Callable[[bool, Any], Any]) -> Pending: ...
    @property
    def is_open(self) -> bool: ...

class Engine:
    """A scheduler with warm pools, driven on the process-wide async runtime."""

    def __new__(
        cls,
        *,
        max_concurrent: Optional[int] = None,
        max_queue: Optional[int] = None,
        pool_size: Optional[int] = None,
        max_age: Optional[float] = None,
        idle: Optional[float] = None,
        max_pools: Optional[int] = None,
    ) -> "Engine": ...
    def run(
        self,
        request: Request,
        code: bytes,
        files: Optional[List[Tuple[str, bytes]]] = None,
        on_stdout: Optional[Callable[[bytes], Any]] = None,
        on_stderr: Optional[Callable[[bytes], Any]] = None,
    ) -> Dict[str, Any]: ...
    def submit(
        self,
        request: Request,
        code: bytes,
        on_done: Callable[[bool, Any], Any],
        files: Optional[List[Tuple[str, bytes]]] = None,
        on_stdout: Optional[Callable[[bytes], Any]] = None,
        on_stderr: Optional[Callable[[bytes], Any]] = None,
    ) -> Pending: ...
    def session(
        self,
        request: Request,
        on_done: Callable[[bool, Any], Any],
        idle_timeout: float = 300.0,
        max_lifetime: float = 3600.0,
    ) -> Pending: ...
    def prewarm(self, request: Request, count: int = 1, timeout: float = 30.0) -> int: ...
    def ready(self, request: Request) -> int: ...
    def warm_started(self) -> int: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...

def default_engine() -> Engine: ...
def shutdown() -> None: ...
def hint(
    kind: str, message: str, network_none: bool = True, timeout: float = 30.0, memory_mb: int = 512
) -> Optional[str]: ...
