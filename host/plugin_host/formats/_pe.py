"""PE (Windows ``.dll``) export tables with pefile.

Exported = every named entry of the export directory (what
``GetProcAddress`` finds by name); ordinal-only entries have no name to match
this project's scheme and are skipped.
"""

from __future__ import annotations

import os

from plugin_interface import NotASharedLibraryError

from ._machines import PE_MACHINES, machine_name
from ._table import ExportTable

__all__ = ["read_pe_exports"]

_PE32_PLUS = 0x20B


def read_pe_exports(path: str) -> ExportTable:
    """The export table of a PE library.

    pefile caps section and export counts itself (``MAX_SECTIONS``,
    ``MAX_SYMBOL_EXPORT_COUNT``) and checks directory sizes against the file.

    :raises NotASharedLibraryError: naming the file and what is malformed.
    """
    import pefile

    if os.path.getsize(path) < 64:
        raise NotASharedLibraryError(path, "truncated: shorter than a DOS header")
    try:
        pe = pefile.PE(path, fast_load=True)
    except OSError as e:
        raise NotASharedLibraryError(path, f"cannot read it: {e.strerror or e}") from e
    except Exception as e:  # PEFormatError, struct.error, ... all mean "malformed"
        raise NotASharedLibraryError(path, f"malformed PE file: {type(e).__name__}: {e}") from e
    try:
        pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_EXPORT"]])
        symbols: dict[str, int] = {}
        export_dir = getattr(pe, "DIRECTORY_ENTRY_EXPORT", None)
        for entry in export_dir.symbols if export_dir is not None else ():
            if entry.name:
                symbols[entry.name.decode("utf-8", "replace")] = int(entry.address)
        regions = tuple(
            (
                int(s.VirtualAddress),
                int(min(s.SizeOfRawData, s.Misc_VirtualSize or s.SizeOfRawData)),
                int(s.PointerToRawData),
            )
            for s in pe.sections
        )
        machine = machine_name(PE_MACHINES, int(pe.FILE_HEADER.Machine))
        pointer_size = 8 if pe.OPTIONAL_HEADER.Magic == _PE32_PLUS else 4
    except Exception as e:  # pefile raises assorted errors on malformed directories
        raise NotASharedLibraryError(path, f"malformed PE file: {type(e).__name__}: {e}") from e
    finally:
        pe.close()
    return ExportTable(path, "pe", machine, pointer_size, "little", symbols, regions)
