# The CPython extension built from host/speedups/elfread.c (optional; see _elf.py elf_exports_fd).

MAX_UNIQUE_NAMES: int

def elf_exports(
    fd: int, size: int, ident: bytes, /
) -> (
    tuple[int, int, int, dict[str, int], tuple[tuple[int, int, int], ...], tuple[str, ...], int, bool, bool, bool]
    | None
): ...
def scheme_scan(
    fd: int, size: int, ident: bytes, abi_version: int, prefixes: tuple[str, ...], /
) -> (
    tuple[
        int,
        int,
        int,
        tuple[str, ...],
        int,
        bool,
        bool,
        bool,
        tuple[str, ...],
        tuple[tuple[str, str, str | None, int, str, bytes | None], ...],
    ]
    | None
): ...
def split_symbol(name: bytes | str, /) -> tuple[str, str, str | None, int] | None: ...
