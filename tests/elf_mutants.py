"""Where a mutation of a real ELF64 little-endian library matters, for the fuzzers that compare two readings.

Imported by the fuzzing children of ``test_elfread.py`` and ``test_scheme_scan.py`` (each runs in a process of
its own, so a reader that crashes on a mutant fails the test instead of ending the run).
"""

from __future__ import annotations

import random
import struct

#: Section types: SHT_PROGBITS (.rodata: the descriptors), SHT_DYNSYM, SHT_STRTAB, SHT_DYNAMIC.
PROGBITS, DYNSYM, STRTAB, DYNAMIC = 1, 11, 3, 6


def hot_spots(data: bytes | bytearray, section_types: tuple[int, ...]) -> list[tuple[int, int]]:
    """``(offset, length)`` of the ELF header, the program and section headers and each section of those types."""
    (shoff,) = struct.unpack_from("<Q", data, 40)
    (phoff,) = struct.unpack_from("<Q", data, 32)
    (shnum,) = struct.unpack_from("<H", data, 60)
    spots = [(0, 64), (phoff, 56 * struct.unpack_from("<H", data, 56)[0]), (shoff, shnum * 64)]
    for i in range(shnum):
        sh_type, offset, size = struct.unpack_from("<I20xQQ", data, shoff + i * 64 + 4)
        if sh_type in section_types:
            spots.append((offset, max(size, 1)))
    return spots


def cut(rng: random.Random, data: bytes | bytearray) -> bytes:
    """``data``, a quarter of the time cut short at a random length."""
    return bytes(data[: len(data) - rng.choice((0, 0, 0, rng.randrange(len(data))))])
