# The CPython extension built from host/speedups/callengine.c (optional; see _engine.py).
from typing import Any

ABI: str
PLAN_VERSION: int
INT_REGS: int
FP_REGS: int
MAX_PARAMS: int
STRUCT_BYTES: int
STRUCTS_BY_VALUE: int

def __getattr__(name: str) -> Any: ...  # the plan codes: S_*, P_*, R_*, F_*

class Gate:
    is_open: bool
    inflight: int
    def close(self) -> None: ...
    def inside(self) -> tuple[str, object] | None: ...

class Method:
    method_name: str
    releases_gil: bool
    def __init__(
        self,
        plan: tuple[Any, ...],
        address: int,
        gate: Gate,
        fallback: Any,
        name: str,
        instance: int = 0,
        free: int = 0,
        owner: object = None,
        doc: str | None = None,
    ) -> None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def bind(self) -> Any: ...

class Function(Method):
    def __getattr__(self, name: str) -> Any: ...
