"""ELF export tables with pyelftools.

Exported = defined, global or weak, default-visibility function, object or
untyped symbols of the dynamic symbol table (``.dynsym``): what ``dlsym`` can
find, and what ``nm -D --defined-only`` lists minus hidden/internal ones.
"""

from __future__ import annotations

import os

from plugin_interface import NotASharedLibraryError

from ._exports import ExportTable, check_table

__all__ = ["read_elf_exports"]

_BINDS = ("STB_GLOBAL", "STB_WEAK")
_TYPES = ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE")
#: Sizes of a section header, program header and symbol, by ELF class.
_SIZES = {32: (40, 32, 16), 64: (64, 56, 24)}


def read_elf_exports(path: str) -> ExportTable:
    """The export table of an ELF shared library.

    :raises NotASharedLibraryError: naming the file and what is malformed.
    """
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            elf = ELFFile(f)
            shent, phent, syment = _SIZES[elf.elfclass]
            # Counts drive pyelftools' loops: check them against the file first.
            if elf["e_phnum"]:
                check_table(path, "program headers", elf["e_phoff"], elf["e_phnum"], elf["e_phentsize"], size)
            if elf["e_shentsize"] != shent:
                raise NotASharedLibraryError(path, f"section header entries of {elf['e_shentsize']} bytes")
            check_table(path, "section headers", elf["e_shoff"], elf.num_sections(), shent, size)
            regions = tuple(
                (seg["p_vaddr"], seg["p_filesz"], seg["p_offset"])
                for seg in elf.iter_segments()
                if seg["p_type"] == "PT_LOAD" and phent == elf["e_phentsize"]
            )
            dynsym = next((s for s in elf.iter_sections() if s["sh_type"] == "SHT_DYNSYM"), None)
            if dynsym is None:
                raise NotASharedLibraryError(path, "no dynamic symbol table (.dynsym)")
            if dynsym["sh_entsize"] != syment:
                raise NotASharedLibraryError(path, f".dynsym entries of {dynsym['sh_entsize']} bytes")
            check_table(path, ".dynsym", dynsym["sh_offset"], dynsym["sh_size"] // syment, syment, size)
            symbols: dict[str, int] = {}
            for sym in dynsym.iter_symbols():  # type: ignore[attr-defined]
                if (
                    sym["st_shndx"] != "SHN_UNDEF"
                    and sym["st_info"]["bind"] in _BINDS
                    and sym["st_other"]["visibility"] == "STV_DEFAULT"
                    and sym["st_info"]["type"] in _TYPES
                    and sym.name
                ):
                    symbols[sym.name] = sym["st_value"]
            machine = str(elf["e_machine"]).removeprefix("EM_").lower()
            little = elf.little_endian
            pointer_size = elf.elfclass // 8
    except NotASharedLibraryError:
        raise
    except OSError as e:
        raise NotASharedLibraryError(path, f"cannot read it: {e.strerror or e}") from e
    except Exception as e:
        # pyelftools raises ELFError, but also ValueError, KeyError, IndexError,
        # struct and construct errors... on malformed files; all mean the same.
        raise NotASharedLibraryError(path, f"malformed ELF file: {type(e).__name__}: {e}") from e
    return ExportTable(path, "elf", machine, pointer_size, "little" if little else "big", symbols, regions)
