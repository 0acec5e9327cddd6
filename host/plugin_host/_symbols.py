"""Listing a library's exported symbols without loading it.

ELF is read with pyelftools (pure Python: it cannot crash the process on a
malformed file, which matters because the host reads untrusted libraries).
Only defined, global/weak, default-visibility function and object symbols of
the dynamic symbol table count as exported.
"""

from __future__ import annotations

import os

from plugin_interface import NotASharedLibraryError

__all__ = ["exported_symbols", "sniff_format"]

_ELF_MAGIC = b"\x7fELF"
_MACHO_MAGICS = {
    b"\xfe\xed\xfa\xce", b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa\xcf", b"\xcf\xfa\xed\xfe",
    b"\xca\xfe\xba\xbe", b"\xbe\xba\xfe\xca",
}


def sniff_format(path: str | os.PathLike[str]) -> str:
    """``"elf"``, ``"pe"`` or ``"macho"`` from the file's magic number.

    :raises NotASharedLibraryError: for a directory, an empty, unreadable or
        unrecognised file.
    """
    if os.path.isdir(path):
        raise NotASharedLibraryError(path, "it is a directory")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise NotASharedLibraryError(path, f"cannot read it: {e.strerror or e}") from e
    if not head:
        raise NotASharedLibraryError(path, "the file is empty")
    if head == _ELF_MAGIC:
        return "elf"
    if head[:2] == b"MZ":
        return "pe"
    if head in _MACHO_MAGICS:
        return "macho"
    raise NotASharedLibraryError(path, f"unrecognised file format (starts with {head!r})")


def exported_symbols(path: str | os.PathLike[str]) -> list[str]:
    """The names a library exports, sorted.

    :raises NotASharedLibraryError: if the file is not a readable library of a
        supported format, naming the file and what is wrong.
    """
    fmt = sniff_format(path)
    if fmt != "elf":
        raise NotASharedLibraryError(path, f"reading {fmt} symbol tables is not supported yet")
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            section = elf.get_section_by_name(".dynsym")
            if section is None:
                raise NotASharedLibraryError(path, "no dynamic symbol table (.dynsym)")
            names: set[str] = set()
            for sym in section.iter_symbols():  # type: ignore[attr-defined]
                if (
                    sym["st_shndx"] != "SHN_UNDEF"
                    and sym["st_info"]["bind"] in ("STB_GLOBAL", "STB_WEAK")
                    and sym["st_other"]["visibility"] == "STV_DEFAULT"
                    and sym["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE")
                    and sym.name
                ):
                    names.add(sym.name)
    except NotASharedLibraryError:
        raise
    except (ELFError, ValueError, KeyError, OSError, IndexError, AssertionError) as e:
        raise NotASharedLibraryError(path, f"malformed ELF file: {e}") from e
    return sorted(names)
