"""What each finding kind of ``abi check`` and ``abi diff`` means: one sentence and its help.

SARIF rules (one per kind, with help text), the Markdown summary and the
README's tables are written from here, so a kind is explained once.
"""

from __future__ import annotations

from ._check import ChangeKind, ProblemKind

__all__ = ["COMPATIBLE_DIFFERENCE", "KIND_HELP", "kind_help"]

#: ``abi check``'s kind for a trait whose descriptor differs from the host's but stays usable.
COMPATIBLE_DIFFERENCE = "compatible_difference"

_BUILD = "Rebuild the plugin against the trait header of the host version it must load into"
_UNLOAD = "see the README's 'Unloading you can trust'"

#: kind -> (short description, help text).
KIND_HELP: dict[str, tuple[str, str]] = {
    ProblemKind.NOT_A_LIBRARY: (
        "The file is not a readable shared library.",
        "The file named like a plugin is not an ELF, PE or Mach-O shared library that can be read (empty, "
        "truncated, corrupted, a text file or a special file). No ABI could be read from it.",
    ),
    ProblemKind.NO_PLUGIN: (
        "The library exports no plugin symbol.",
        "No plugin_register_* symbol was found (for the trait asked for). Export the registrations with the "
        "PLUGIN_IMPL / PLUGIN_AGGREGATES macros, and check the version script does not hide them.",
    ),
    ProblemKind.MALFORMED_SYMBOL: (
        "An exported symbol looks like the plugin scheme but does not parse.",
        "Symbols starting with plugin_register_, plugin_unregister_, plugin_unmaker_counter_, "
        "plugin_abi_descriptor_ or plugin_trait_declaration_ must follow plugin_<role>_<Trait>[_<Type>]_v<N>.",
    ),
    ProblemKind.UNKNOWN_TRAIT: (
        "The trait is not declared by the host and the library embeds no declaration.",
        "The host cannot check or load a trait it has no declaration of. Build with the generated header "
        "(it embeds plugin_trait_declaration_<T>_v1) or pass the declaring module with --traits.",
    ),
    ProblemKind.UNKNOWN_VERSION: (
        "A symbol's _vN ABI version is not the host's.",
        f"The host only looks up symbols of its own ABI version. {_BUILD}.",
    ),
    ProblemKind.MISSING_UNMAKER: (
        "A maker is exported without its unmaker.",
        "Every plugin_register_<T>_<Type>_vN needs plugin_unregister_<T>_<Type>_vN: the host frees what the "
        "maker made through it.",
    ),
    ProblemKind.UNMAKER_WITHOUT_MAKER: (
        "An unmaker is exported without a maker.",
        "A leftover unmaker: harmless, but usually a sign of a renamed or removed implementation.",
    ),
    ProblemKind.AGGREGATE_WITHOUT_COUNTER: (
        "An aggregate is exported without its unmaker counter.",
        "PLUGIN_AGGREGATES(T) exports plugin_register_all_<T>_v1 with plugin_unmaker_counter_<T>_v1; the host "
        "needs the counter to verify releases.",
    ),
    ProblemKind.AGGREGATE_WITHOUT_RELEASE: (
        "An aggregate is exported without plugin_unregister_all.",
        "Without plugin_unregister_all_<T>_v1 the array the aggregate returns can never be released.",
    ),
    ProblemKind.RELEASE_WITHOUT_AGGREGATE: (
        "plugin_unregister_all is exported without an aggregate.",
        "A leftover release function: harmless.",
    ),
    ProblemKind.MISSING_DESCRIPTOR: (
        "No ABI descriptor is exported.",
        "Without plugin_abi_descriptor_<T>_v1 the host cannot check the layout before calling a maker; build "
        "with PLUGIN_AGGREGATES or PLUGIN_UNMAKER_COUNTER.",
    ),
    ProblemKind.DESCRIPTOR_UNREADABLE: (
        "The ABI descriptor cannot be read from the file.",
        "The descriptor is truncated, inconsistent or not stored in the file (e.g. in .bss).",
    ),
    ProblemKind.DESCRIPTOR_MISMATCH: (
        "The plugin's ABI descriptor is incompatible with the host's declaration.",
        f"A method signature, the vtable size, the registration size or the ABI version differs in a way the "
        f"host must refuse. {_BUILD}; a new trait version may only append methods.",
    ),
    ProblemKind.DECLARATION_UNREADABLE: (
        "The embedded trait declaration cannot be read.",
        "plugin_trait_declaration_<T>_v1 is not a valid declaration (truncated, another format, another trait).",
    ),
    ProblemKind.DECLARATION_MISMATCH: (
        "The embedded declaration and the descriptor disagree.",
        "The two were generated from different headers: rebuild from one generated header.",
    ),
    ProblemKind.METHOD_MISMATCH: (
        "A method of the plugin's trait differs from the host's declaration.",
        f"The message names the method, the parameter and both signatures. {_BUILD}.",
    ),
    ProblemKind.PROBE_CRASHED: ("The isolated probe crashed.", "Running the constructors and makers raised a signal."),
    ProblemKind.PROBE_EXITED: ("The isolated probe exited.", "The library's code called exit() while it was probed."),
    ProblemKind.PROBE_TIMEOUT: ("The isolated probe timed out.", "The library's code did not return in time."),
    ProblemKind.PROBE_FAILED: (
        "The isolated probe failed.",
        "The pre-check or the loader refused the library, or a maker returned NULL.",
    ),
    ProblemKind.PROBE_SKIPPED: (
        "The library was not probed.",
        "It is built for another platform than this host's; only its file was checked.",
    ),
    ProblemKind.UNLOAD_BLOCKED: ("The library can never be unloaded.", f"glibc keeps it mapped: {_UNLOAD}."),
    ProblemKind.UNLOAD_MAY_BE_BLOCKED: ("The library may not unload.", f"It may register destructors: {_UNLOAD}."),
    COMPATIBLE_DIFFERENCE: (
        "The plugin differs from the host's declaration, compatibly.",
        "A newer plugin appends methods the host does not call, or an older one lacks methods the host has "
        "(calling them raises MethodNotProvidedError). Loadable; listed so a change is never silent.",
    ),
    ChangeKind.PLATFORM_CHANGED: (
        "The format, machine or pointer size changed.",
        "A host of the old platform cannot load the new build.",
    ),
    ChangeKind.TRAIT_ADDED: ("A trait was added.", "Hosts that do not know it ignore it."),
    ChangeKind.TRAIT_REMOVED: ("A trait was removed.", "Hosts that loaded it from this library lose it."),
    ChangeKind.REGISTRATION_ADDED: ("An implementation was added.", "Compatible: hosts find one more type."),
    ChangeKind.REGISTRATION_REMOVED: (
        "An implementation was removed.",
        "Hosts that made this type from the old build no longer find it.",
    ),
    ChangeKind.VERSION_ADDED: ("An implementation is also exported at another _vN.", "Compatible."),
    ChangeKind.VERSION_BUMP: (
        "An implementation's _vN ABI version was replaced.",
        "Hosts of the old ABI version no longer find it.",
    ),
    ChangeKind.SYMBOL_ADDED: ("A plugin symbol was added.", "Compatible."),
    ChangeKind.SYMBOL_REMOVED: (
        "An unmaker, aggregate, release or counter was removed.",
        "Hosts rely on these to free and verify what the plugin made.",
    ),
    ChangeKind.DESCRIPTOR_ADDED: ("An ABI descriptor was added.", "Hosts can now check the layout first."),
    ChangeKind.DESCRIPTOR_REMOVED: (
        "The ABI descriptor was removed.",
        "Hosts can no longer check the layout before calling a maker (they still load it).",
    ),
    ChangeKind.DESCRIPTOR_CHANGED: (
        "The ABI descriptor changed.",
        "Compatible when a new trait version appends methods; breaking when a method, the vtable or the "
        "registration layout changed, or methods were dropped.",
    ),
    ChangeKind.METHOD_ADDED: ("A trait method was appended.", "Compatible: older hosts do not call it."),
    ChangeKind.METHOD_REMOVED: ("A trait method was removed.", "Hosts that call it break."),
    ChangeKind.METHOD_CHANGED: (
        "A trait method's signature changed.",
        "The message names the method, the parameter that changed and both builds' signatures.",
    ),
    ChangeKind.LIBRARY_ADDED: ("A plugin library was added to the folder.", "Compatible."),
    ChangeKind.LIBRARY_REMOVED: (
        "A plugin library was removed from the folder.",
        "Hosts that loaded it lose every implementation it had.",
    ),
}


def kind_help(kind: str) -> tuple[str, str]:
    """``(short description, help)`` of a finding kind."""
    return KIND_HELP.get(kind, (f"{kind}.", f"A finding of kind {kind}."))
