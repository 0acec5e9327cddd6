"""Host contracts: the trait declarations one host version accepts, as a file.

``plugin-host abi contract -o host-v3.json`` exports what this host declares
(its traits, and those ``--traits`` modules add); ``abi check --contract
host-v2.json --contract host-v3.json DIR`` then checks each plugin against
every contract, so a plugin build is gated against every supported host
version without installing the old hosts.  A contract holds each trait's
declaration (:meth:`~plugin_interface.TraitSpec.to_json`), from which the
descriptor a host of that version expects is derived exactly as a running
host derives it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

from plugin_interface import ABI_VERSION, TraitSpec, declared_traits

from ..formats import read_small_file

__all__ = ["CONTRACT_SCHEMA", "MAX_CONTRACT_BYTES", "HostContract", "host_contract", "load_contract"]

CONTRACT_SCHEMA = "plugin-host-contract/1"
#: A contract larger than this (in bytes) is refused unread; a real one is a few KiB.
MAX_CONTRACT_BYTES = 16 << 20
#: A contract's name appears in tables, SARIF and JUnit: printable, short.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


@dataclass(frozen=True)
class HostContract:
    """The traits one host version accepts.

    :ivar name: how reports name it (``host-v3``).
    :ivar abi_version: the host's ``PLUGIN_ABI_VERSION`` (the ``_vN`` of its symbols).
    :ivar traits: trait name -> declaration.
    """

    name: str
    abi_version: int
    traits: dict[str, TraitSpec] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """The contract file (``schema`` ``plugin-host-contract/1``), sorted."""
        return {
            "schema": CONTRACT_SCHEMA,
            "name": self.name,
            "abi_version": self.abi_version,
            "traits": {name: spec.to_json() for name, spec in sorted(self.traits.items())},
        }

    @classmethod
    def from_json(cls, data: object, source: str = "<contract>") -> HostContract:
        """Rebuild from :meth:`to_json` output, every declaration checked.

        :raises ValueError: naming ``source`` and what is wrong.
        """
        if not isinstance(data, dict) or data.get("schema") != CONTRACT_SCHEMA:
            raise ValueError(f"{source}: not a plugin-host contract (schema {CONTRACT_SCHEMA!r} expected)")
        name, abi_version, traits = data.get("name"), data.get("abi_version"), data.get("traits")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"{source}: malformed contract: name must be 1-64 letters, digits, '.', '_', '+', '-'")
        if type(abi_version) is not int:
            raise ValueError(f"{source}: malformed contract: abi_version must be an integer")
        if abi_version != ABI_VERSION:
            msg = f"{source}: a contract of ABI version {abi_version}; this plugin-host checks version {ABI_VERSION}"
            raise ValueError(msg)
        if not isinstance(traits, dict):
            raise ValueError(f"{source}: malformed contract: traits must be an object")
        specs: dict[str, TraitSpec] = {}
        for trait, declaration in traits.items():
            try:
                spec = TraitSpec.from_json(declaration)
            except ValueError as e:
                raise ValueError(f"{source}: malformed contract: trait {str(trait)[:80]!r}: {e}") from e
            if spec.name != trait:
                raise ValueError(f"{source}: malformed contract: trait {str(trait)[:80]!r} declares {spec.name}")
            specs[spec.name] = spec
        return cls(name, abi_version, specs)


def host_contract(name: str, traits: dict[str, TraitSpec] | None = None) -> HostContract:
    """This host's contract: every trait it declares (default: :func:`~plugin_interface.declared_traits`).

    :raises ValueError: a name reports cannot carry.
    """
    if not _NAME.match(name):
        raise ValueError(f"contract name {name[:80]!r}: 1-64 letters, digits, '.', '_', '+', '-'")
    return HostContract(name, ABI_VERSION, dict(declared_traits() if traits is None else traits))


def load_contract(path: str | os.PathLike[str]) -> HostContract:
    """A contract file (``abi contract`` output), read as warily as a dump.

    :raises ValueError: naming the file: unreadable, too large, not JSON, or not a valid contract.
    """
    name = os.fspath(path)
    raw = read_small_file(name, MAX_CONTRACT_BYTES, "a contract")
    try:
        data = json.loads(raw.decode("utf-8"))
    except RecursionError as e:
        raise ValueError(f"{name}: not valid JSON: nested too deeply") from e
    except ValueError as e:
        raise ValueError(f"{name}: not valid JSON: {e}") from e
    return HostContract.from_json(data, name)
