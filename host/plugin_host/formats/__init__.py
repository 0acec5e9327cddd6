"""Binary formats: recognising, bounding and reading ELF, PE and Mach-O files.

The lowest layer of the host: nothing here loads a file or runs its code,
and nothing here imports another part of ``plugin_host``.  One module per
format (:mod:`._elf`, :mod:`._pe`, :mod:`._macho`), one sniffer
(:mod:`._sniff`), one machine vocabulary (:mod:`._machines`), one rule for
which files count as plugins (:mod:`._files`).
"""

from __future__ import annotations

from ._elf import (
    BYTE_ORDER_NAMES,
    CLASS_NAMES,
    ELF_TYPE_NAMES,
    DynamicFlags1,
    DynamicTag,
    ElfClass,
    ElfData,
    ElfIdentity,
    ElfLayout,
    ElfType,
    SectionType,
    SegmentType,
    SymbolBinding,
    SymbolType,
    UnloadBlockers,
    check_complete,
    check_elf_complete,
    host_elf_identity,
    read_unload_blockers,
)
from ._exports import exported_names, exported_symbols, open_exports, open_scheme_exports, read_exports
from ._files import ALL_LIBRARY_SUFFIXES, is_plugin_file, plugin_file_names, plugin_file_paths, plugin_files
from ._io import MAX_LIBRARY_BYTES, READ_FLAGS, pread, read_capped, read_small_file
from ._machines import ELF_MACHINES, Machine, machine_name
from ._sniff import ELF_MAGIC, BinaryFormat, format_of, native_format, sniff_format
from ._table import ExportTable, SchemeExports, check_table

__all__ = [
    "ALL_LIBRARY_SUFFIXES",
    "BYTE_ORDER_NAMES",
    "CLASS_NAMES",
    "ELF_MACHINES",
    "ELF_MAGIC",
    "ELF_TYPE_NAMES",
    "MAX_LIBRARY_BYTES",
    "READ_FLAGS",
    "BinaryFormat",
    "DynamicFlags1",
    "DynamicTag",
    "ElfClass",
    "ElfData",
    "ElfIdentity",
    "ElfLayout",
    "ElfType",
    "ExportTable",
    "SchemeExports",
    "Machine",
    "SectionType",
    "SegmentType",
    "SymbolBinding",
    "SymbolType",
    "UnloadBlockers",
    "check_complete",
    "check_elf_complete",
    "check_table",
    "exported_names",
    "exported_symbols",
    "format_of",
    "host_elf_identity",
    "is_plugin_file",
    "machine_name",
    "native_format",
    "open_exports",
    "open_scheme_exports",
    "plugin_file_names",
    "plugin_file_paths",
    "plugin_files",
    "pread",
    "read_capped",
    "read_small_file",
    "read_exports",
    "read_unload_blockers",
    "sniff_format",
]
