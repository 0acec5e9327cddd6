# The cffi API-mode module built from host/speedups (optional; see _accel.py).
from typing import Any

ffi: Any
lib: Any
