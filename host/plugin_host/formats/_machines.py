"""One vocabulary of machine names, and each format's numbers for them.

Names are spelled as ``uname -m`` and the toolchains spell them
(``x86_64``, ``aarch64``); every reader and every message uses this table.
"""

from __future__ import annotations

import enum

__all__ = ["ELF_MACHINES", "MACHO_CPUS", "PE_MACHINES", "PLATFORM_MACHINES", "Machine", "machine_name"]


class Machine(enum.StrEnum):
    """A processor architecture."""

    I386 = "i386"
    X86_64 = "x86_64"
    ARM = "arm"
    AARCH64 = "aarch64"
    PPC = "ppc"
    PPC64 = "ppc64"
    S390X = "s390x"
    SPARC = "sparc"
    SPARC64 = "sparc64"
    MIPS = "mips"
    RISCV = "riscv"
    LOONGARCH = "loongarch"


class ElfMachine(enum.IntEnum):
    """``e_machine`` values (the ones named here)."""

    EM_SPARC = 2
    EM_386 = 3
    EM_MIPS = 8
    EM_PPC = 20
    EM_PPC64 = 21
    EM_S390 = 22
    EM_ARM = 40
    EM_SPARCV9 = 43
    EM_X86_64 = 62
    EM_AARCH64 = 183
    EM_RISCV = 243
    EM_LOONGARCH = 258


ELF_MACHINES: dict[int, Machine] = {
    ElfMachine.EM_SPARC: Machine.SPARC,
    ElfMachine.EM_386: Machine.I386,
    ElfMachine.EM_MIPS: Machine.MIPS,
    ElfMachine.EM_PPC: Machine.PPC,
    ElfMachine.EM_PPC64: Machine.PPC64,
    ElfMachine.EM_S390: Machine.S390X,
    ElfMachine.EM_ARM: Machine.ARM,
    ElfMachine.EM_SPARCV9: Machine.SPARC64,
    ElfMachine.EM_X86_64: Machine.X86_64,
    ElfMachine.EM_AARCH64: Machine.AARCH64,
    ElfMachine.EM_RISCV: Machine.RISCV,
    ElfMachine.EM_LOONGARCH: Machine.LOONGARCH,
}
#: IMAGE_FILE_MACHINE_* of a PE file header.
PE_MACHINES: dict[int, Machine] = {
    0x14C: Machine.I386,
    0x8664: Machine.X86_64,
    0xAA64: Machine.AARCH64,
    0x1C4: Machine.ARM,
}
#: cputype of a Mach-O header.
MACHO_CPUS: dict[int, Machine] = {
    7: Machine.I386,
    0x01000007: Machine.X86_64,
    12: Machine.ARM,
    0x0100000C: Machine.AARCH64,
    18: Machine.PPC,
    0x01000012: Machine.PPC64,
}
#: ``platform.machine()`` (lowercased) -> machine: the fallback when the interpreter's header cannot be read.
PLATFORM_MACHINES: dict[str, Machine] = {
    "x86_64": Machine.X86_64,
    "amd64": Machine.X86_64,
    "aarch64": Machine.AARCH64,
    "arm64": Machine.AARCH64,
    "i386": Machine.I386,
    "i686": Machine.I386,
    "x86": Machine.I386,
    "armv7l": Machine.ARM,
    "armv6l": Machine.ARM,
    "riscv64": Machine.RISCV,
    "ppc64le": Machine.PPC64,
    "ppc64": Machine.PPC64,
    "s390x": Machine.S390X,
    "loongarch64": Machine.LOONGARCH,
}


def machine_name(table: dict[int, Machine], code: int | None) -> str:
    """The name of machine ``code`` in ``table`` (``"machine 4711"`` when unnamed)."""
    if code is None:
        return "an unknown machine"
    known = table.get(code)
    return str(known) if known is not None else f"machine {code}"
