"""Generate a dependency-free Rust module from trait declarations.

``python -m plugin_annotations rust MODULE[:TRAIT] ... -o src/plugin_abi.rs`` writes one
module with, for every trait: the ``#[repr(C)]`` registration, array, factory,
bytes and descriptor types of ``plugin_interface.h``; the trait's vtable and
descriptor types; the descriptor and the embedded declaration as constants;
a safe Rust ``trait`` to implement; ``extern "C"`` thunks that convert the C
arguments and results and run every call under ``catch_unwind``; and the
``macro_rules!`` equivalents of the C macros::

    plugin_impl!(Greeter, English, EnglishGreeter);            // PLUGIN_IMPL
    plugin_impl!(Greeter, Named, Named, Named::new("x"));       // PLUGIN_IMPL_WITH_STATE
    plugin_aggregates!(Greeter; EnglishGreeter, Named);         // PLUGIN_AGGREGATES
    plugin_unmaker_counter!(Greeter);                           // PLUGIN_UNMAKER_COUNTER

Rust has no link-time collection without crates (``inventory``), so the
aggregate lists its implementation types.  The module uses only ``std``; the
macros are ``#[macro_export]`` and name the module as ``$crate::<module>``
(the output file's stem unless ``--module`` says otherwise), so it belongs at
the crate root: ``mod plugin_abi;``.  It compiles warning-free with
``-D warnings`` in editions 2021 and 2024 (``#[unsafe(export_name)]``: rustc
1.82 or later).

Panics: every entry point (maker, unmaker, aggregate, thunks, ``free_memory``)
runs under ``catch_unwind``.  What the caller sees then is the trait's error
path: a ``Status`` method returns -1 and the panic message in ``*error``; an
``OwnedStr`` method returns NULL (the host raises ``PluginCallError``);
``OwnedBytes`` returns ``{NULL, 0}``; a scalar returns its zero; a maker
whose constructor panics returns NULL.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterable
from pathlib import Path

from plugin_interface import ABI_VERSION, CType, MethodSpec, TraitSpec, TypeKind, encode_declaration, resolve_trait
from plugin_interface._traits import TraitLike

__all__ = ["generate_rust_module", "rust_regenerate_command", "write_rust_module"]

_SCALARS = {
    "I8": "i8",
    "I16": "i16",
    "I32": "i32",
    "I64": "i64",
    "U8": "u8",
    "U16": "u16",
    "U32": "u32",
    "U64": "u64",
    "Size": "usize",
    "F32": "f32",
    "F64": "f64",
    "Bool": "bool",
}
#: The marker kinds the generator converts (Callback, Handle and Drop are not done yet).
_SUPPORTED = frozenset(
    {
        TypeKind.SCALAR,
        TypeKind.CSTR,
        TypeKind.BUFFER,
        TypeKind.MUTBUFFER,
        TypeKind.OWNEDSTR,
        TypeKind.VOID,
        TypeKind.ARRAY,
        TypeKind.MUTARRAY,
        TypeKind.OUT,
        TypeKind.OWNEDBYTES,
        TypeKind.STATUS,
    }
)
_KEYWORDS = frozenset(
    "as async await break const continue crate dyn else enum extern false fn for if impl in let loop match mod "
    "move mut pub ref return self Self static struct super trait true type unsafe use where while abstract become "
    "box do final gen macro override priv try typeof unsized virtual yield".split()
)


def _ident(name: str) -> str:
    """A Rust identifier for a declared name (``r#type`` for a keyword)."""
    if name in ("self", "Self", "super", "crate"):
        return f"{name}_"
    return f"r#{name}" if name in _KEYWORDS else name


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def _scalar(ct: CType) -> str:
    return _SCALARS[ct.name]


def _c_params(ct: CType) -> list[str]:
    """The raw C parameter types one marker expands to, in Rust."""
    kind = ct.kind
    if kind is TypeKind.CSTR:
        return ["*const c_char"]
    if kind is TypeKind.BUFFER:
        return ["*const u8", "usize"]
    if kind is TypeKind.MUTBUFFER:
        return ["*mut u8", "usize"]
    if kind is TypeKind.ARRAY:
        return [f"*const {_scalar(ct.item)}", "usize"]  # type: ignore[arg-type]
    if kind is TypeKind.MUTARRAY:
        return [f"*mut {_scalar(ct.item)}", "usize"]  # type: ignore[arg-type]
    if kind is TypeKind.OUT:
        return [f"*mut {_scalar(ct.item)}"]  # type: ignore[arg-type]
    return [_scalar(ct)]


def _c_return(ct: CType) -> str:
    """The raw C return type, in Rust (``""`` for void)."""
    special = {TypeKind.OWNEDSTR: "*mut c_char", TypeKind.OWNEDBYTES: "PluginBytes", TypeKind.STATUS: "i32"}
    if ct.kind is TypeKind.VOID:
        return ""
    return special.get(ct.kind) or _scalar(ct)


def _rust_param(ct: CType) -> str:
    """The type the safe trait method takes."""
    kind = ct.kind
    if kind is TypeKind.CSTR:
        return "&CStr"
    if kind is TypeKind.BUFFER:
        return "&[u8]"
    if kind is TypeKind.MUTBUFFER:
        return "&mut [u8]"
    if kind is TypeKind.ARRAY:
        return f"&[{_scalar(ct.item)}]"  # type: ignore[arg-type]
    if kind is TypeKind.MUTARRAY:
        return f"&mut [{_scalar(ct.item)}]"  # type: ignore[arg-type]
    if kind is TypeKind.OUT:
        return f"&mut {_scalar(ct.item)}"  # type: ignore[arg-type]
    return _scalar(ct)


def _rust_return(ct: CType) -> str:
    return {
        TypeKind.OWNEDSTR: "String",
        TypeKind.OWNEDBYTES: "Vec<u8>",
        TypeKind.STATUS: "Result<(), PluginError>",
        TypeKind.VOID: "()",
    }.get(ct.kind) or _scalar(ct)


def _fn_type(m: MethodSpec) -> str:
    params = ["*mut c_void"]
    for p in m.params:
        params += _c_params(p.ctype)
    if m.returns.kind is TypeKind.STATUS:
        params.append("*mut *mut c_char")
    ret = _c_return(m.returns)
    return f'unsafe extern "C" fn({", ".join(params)})' + (f" -> {ret}" if ret else "")


def _doc(text: str, indent: str = "") -> list[str]:
    return [f"{indent}/// {line}".rstrip() for line in text.splitlines()] if text else []


def _thunk(spec: TraitSpec, m: MethodSpec) -> list[str]:
    """The ``extern "C"`` function of one vtable slot, generic over the implementing type."""
    params = ["this: *mut c_void"]
    converts: list[str] = []
    args: list[str] = []
    for i, p in enumerate(m.params):
        kind, a = p.ctype.kind, f"a{i}"
        if kind is TypeKind.CSTR:
            params.append(f"{a}: *const c_char")
            converts.append(f"let {a} = unsafe {{ cstr_arg({a}) }};")
        elif kind in (TypeKind.BUFFER, TypeKind.ARRAY):
            params += [f"{a}: {_c_params(p.ctype)[0]}", f"{a}_len: usize"]
            converts.append(f"let {a} = unsafe {{ slice_arg({a}, {a}_len) }};")
        elif kind in (TypeKind.MUTBUFFER, TypeKind.MUTARRAY):
            params += [f"{a}: {_c_params(p.ctype)[0]}", f"{a}_len: usize"]
            converts.append(f"let {a} = unsafe {{ slice_mut_arg({a}, {a}_len) }};")
        elif kind is TypeKind.OUT:
            params.append(f"{a}: {_c_params(p.ctype)[0]}")
            converts.append(f"let mut {a}_scratch = Default::default();")
            converts.append(f"let {a} = unsafe {{ out_arg({a}, &mut {a}_scratch) }};")
        else:
            params.append(f"{a}: {_scalar(p.ctype)}")
        args.append(a)
    kind = m.returns.kind
    if kind is TypeKind.STATUS:
        params.append("error: *mut *mut c_char")
    ret = _c_return(m.returns)
    call = f"this.{_ident(m.name)}({', '.join(args)})"
    name = f"{_snake(spec.name)}_{m.name}_thunk"
    head = f'pub unsafe extern "C" fn {name}<T: {spec.name}>({", ".join(params)})' + (f" -> {ret}" if ret else "")
    body = [
        "    let result = catch_unwind(AssertUnwindSafe(|| {",
        "        let this = unsafe { &*(this as *const T) };",
        *[f"        {line}" for line in converts],
        f"        {call}",
        "    }));",
    ]
    if kind is TypeKind.OWNEDSTR:
        body.append("    result.map(|s| owned_str(&s)).unwrap_or(ptr::null_mut())")
    elif kind is TypeKind.OWNEDBYTES:
        body.append("    result.map(|b| owned_bytes(&b)).unwrap_or(PluginBytes { data: ptr::null_mut(), len: 0 })")
    elif kind is TypeKind.STATUS:
        body.append("    unsafe { status_result(result, error) }")
    elif kind is TypeKind.VOID:
        body.append("    let _ = result;")
    else:
        body.append("    result.unwrap_or_default()")
    return [
        f"/// The vtable slot of {spec.name}.{m.name}: converts, calls `T::{m.name}`, contains panics.",
        "#[allow(clippy::missing_safety_doc)]",
        head + " {",
        *body,
        "}",
    ]


_COMMON = """
use std::alloc::{alloc, dealloc, Layout};
use std::ffi::CStr;
use std::os::raw::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::AtomicUsize;

/// The `_vN` suffix of every exported symbol (`PLUGIN_ABI_VERSION`).
pub const PLUGIN_ABI_VERSION: u32 = @ABI_VERSION@;

/// `PluginRegistration`: one registered implementation of one trait.
#[repr(C)]
pub struct PluginRegistration {
    pub struct_size: u32,
    pub abi_version: u32,
    pub trait_name: *const c_char,
    pub trait_version: u32,
    pub vtable_size: u32,
    pub type_name: *const c_char,
    pub instance: *mut c_void,
    pub vtable: *const c_void,
    pub free_memory: Option<unsafe extern "C" fn(*mut c_void)>,
}

/// `PluginRegistrationFactory`: a maker and its unmaker.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PluginRegistrationFactory {
    pub maker: Option<extern "C" fn() -> *mut PluginRegistration>,
    pub unmaker: Option<unsafe extern "C" fn(*mut PluginRegistration)>,
}

/// `PluginRegistrationArray`: what an aggregate returns (`factories` non-NULL: plugin-owned).
#[repr(C)]
pub struct PluginRegistrationArray {
    pub registrations: *mut *mut PluginRegistration,
    pub len: usize,
    pub factories: *const PluginRegistrationFactory,
}

/// `PluginBytes`: what an `OwnedBytes` method returns (`data` released with `free_memory`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PluginBytes {
    pub data: *mut u8,
    pub len: usize,
}

/// `PluginAbiDescriptor`: the head of `plugin_abi_descriptor_<T>_v1`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PluginAbiDescriptor {
    pub struct_size: u32,
    pub abi_version: u32,
    pub trait_version: u32,
    pub registration_size: u32,
    pub vtable_size: u32,
    pub method_count: u32,
    pub fingerprint: u64,
}

/// What a `Status` method returns on failure: a non-zero code and a message for the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    pub code: i32,
    pub message: String,
}

impl PluginError {
    /// An error with `code` (0 becomes -1: zero means success) and `message`.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        PluginError { code: if code == 0 { -1 } else { code }, message: message.into() }
    }
}

/// An implementation type registered for the trait whose tag is `Tag` (made by `plugin_impl!`).
pub trait PluginFactory<Tag> {
    const FACTORY: PluginRegistrationFactory;
}

// ---- memory the host releases with free_memory --------------------------------

const HEADER: usize = 16; // keeps 16-byte alignment and holds the allocation's size

/// `n` bytes the host releases with the registration's `free_memory` (NULL when out of memory).
pub fn plugin_alloc(n: usize) -> *mut u8 {
    let Some(total) = n.checked_add(HEADER) else { return ptr::null_mut() };
    let Ok(layout) = Layout::from_size_align(total, HEADER) else { return ptr::null_mut() };
    // SAFETY: the layout's size is at least HEADER, never zero.
    let base = unsafe { alloc(layout) };
    if base.is_null() {
        return base;
    }
    // SAFETY: base holds HEADER bytes aligned for usize before the caller's part.
    unsafe {
        (base as *mut usize).write(total);
        base.add(HEADER)
    }
}

/// `registration->free_memory`: releases what `plugin_alloc` made (NULL is ignored).
///
/// # Safety
/// `p` is NULL or came from `plugin_alloc` and was not released yet.
pub unsafe extern "C" fn plugin_free_memory(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    let _ = catch_unwind(|| {
        // SAFETY: p came from plugin_alloc, which stored the total size HEADER bytes before it.
        unsafe {
            let base = (p as *mut u8).sub(HEADER);
            let total = (base as *const usize).read();
            dealloc(base, Layout::from_size_align_unchecked(total, HEADER));
        }
    });
}

/// A NUL-terminated copy of `s` for an `OwnedStr` result (NULL when out of memory).
pub fn owned_str(s: &str) -> *mut c_char {
    let p = plugin_alloc(s.len() + 1);
    if !p.is_null() {
        // SAFETY: p has s.len() + 1 bytes.
        unsafe {
            ptr::copy_nonoverlapping(s.as_ptr(), p, s.len());
            p.add(s.len()).write(0);
        }
    }
    p as *mut c_char
}

/// A copy of `b` for an `OwnedBytes` result (`{NULL, 0}` when empty or out of memory).
pub fn owned_bytes(b: &[u8]) -> PluginBytes {
    if b.is_empty() {
        return PluginBytes { data: ptr::null_mut(), len: 0 };
    }
    let p = plugin_alloc(b.len());
    if p.is_null() {
        return PluginBytes { data: p, len: 0 };
    }
    // SAFETY: p has b.len() bytes.
    unsafe { ptr::copy_nonoverlapping(b.as_ptr(), p, b.len()) };
    PluginBytes { data: p, len: b.len() }
}

// ---- argument conversions (NULL pointers become empty values) -------------------

/// # Safety
/// `p` is NULL or a NUL-terminated string valid for the call.
pub unsafe fn cstr_arg<'a>(p: *const c_char) -> &'a CStr {
    if p.is_null() { Default::default() } else { unsafe { CStr::from_ptr(p) } }
}

/// # Safety
/// `p` is NULL or valid for `len` reads of T for the call.
pub unsafe fn slice_arg<'a, T>(p: *const T, len: usize) -> &'a [T] {
    if p.is_null() || len == 0 { &[] } else { unsafe { std::slice::from_raw_parts(p, len) } }
}

/// # Safety
/// `p` is NULL or valid for `len` reads and writes of T for the call.
pub unsafe fn slice_mut_arg<'a, T>(p: *mut T, len: usize) -> &'a mut [T] {
    if p.is_null() || len == 0 { &mut [] } else { unsafe { std::slice::from_raw_parts_mut(p, len) } }
}

/// # Safety
/// `p` is NULL or valid for a write of T for the call.
pub unsafe fn out_arg<'a, T>(p: *mut T, scratch: &'a mut T) -> &'a mut T {
    if p.is_null() { scratch } else { unsafe { &mut *p } }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panic: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panic: {s}")
    } else {
        String::from("panic (no message)")
    }
}

/// A `Status` method's result as the C ABI has it: 0, or a code with the message in `*error`.
///
/// # Safety
/// `error` is NULL or valid for a write.
pub unsafe fn status_result(
    result: std::thread::Result<Result<(), PluginError>>,
    error: *mut *mut c_char,
) -> i32 {
    let (code, message) = match result {
        Ok(Ok(())) => return 0,
        Ok(Err(e)) => (if e.code == 0 { -1 } else { e.code }, e.message),
        Err(payload) => (-1, panic_message(payload.as_ref())),
    };
    if !error.is_null() {
        // SAFETY: the caller passes a writable char ** (or NULL, checked above).
        unsafe { error.write(owned_str(&message)) };
    }
    code
}

// ---- makers, unmakers, aggregates (what the macros expand to) ----------------------

/// A maker's body: the instance from `make`, a registration around it (NULL if `make` panics).
pub fn make_registration<T>(
    trait_name: &'static str,
    type_name: &'static str,
    trait_version: u32,
    vtable_size: usize,
    vtable: *const c_void,
    make: impl FnOnce() -> T,
) -> *mut PluginRegistration {
    catch_unwind(AssertUnwindSafe(|| {
        let instance = Box::into_raw(Box::new(make())) as *mut c_void;
        Box::into_raw(Box::new(PluginRegistration {
            struct_size: std::mem::size_of::<PluginRegistration>() as u32,
            abi_version: PLUGIN_ABI_VERSION,
            trait_name: trait_name.as_ptr() as *const c_char,
            trait_version,
            vtable_size: vtable_size as u32,
            type_name: type_name.as_ptr() as *const c_char,
            instance,
            vtable,
            free_memory: Some(plugin_free_memory),
        }))
    }))
    .unwrap_or(ptr::null_mut())
}

/// An unmaker's body: drops the instance and the registration, then counts the call.
///
/// # Safety
/// `reg` is NULL or came from the maker of the same `T`, and is released once.
pub unsafe fn release_registration<T>(reg: *mut PluginRegistration, counter: &AtomicUsize) {
    if reg.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: reg and its instance were made by make_registration::<T>.
        unsafe {
            let reg = Box::from_raw(reg);
            drop(Box::from_raw(reg.instance as *mut T));
        }
    }));
    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// `plugin_register_all_<T>_v1`: every factory's registration, or NULL (after unmaking the made ones).
pub fn register_all(factories: &'static [PluginRegistrationFactory]) -> *mut PluginRegistrationArray {
    catch_unwind(|| {
        let mut made: Vec<*mut PluginRegistration> = Vec::with_capacity(factories.len());
        for f in factories {
            let reg = f.maker.map(|m| m()).unwrap_or(ptr::null_mut());
            if reg.is_null() {
                for (g, r) in factories.iter().zip(made) {
                    if let Some(unmake) = g.unmaker {
                        // SAFETY: r came from g's maker.
                        unsafe { unmake(r) };
                    }
                }
                return ptr::null_mut();
            }
            made.push(reg);
        }
        let len = made.len();
        let registrations = Box::into_raw(made.into_boxed_slice()) as *mut *mut PluginRegistration;
        Box::into_raw(Box::new(PluginRegistrationArray { registrations, len, factories: factories.as_ptr() }))
    })
    .unwrap_or(ptr::null_mut())
}

/// `plugin_unregister_all_<T>_v1`: unmakes every entry, then frees the array.
///
/// # Safety
/// `array` is NULL or came from `register_all`, and is released once.
pub unsafe fn unregister_all(array: *mut PluginRegistrationArray) {
    if array.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: array, its registrations and factories were made by register_all.
        unsafe {
            let array = Box::from_raw(array);
            let regs = Box::from_raw(ptr::slice_from_raw_parts_mut(array.registrations, array.len));
            for (i, reg) in regs.iter().enumerate() {
                if let Some(unmake) = (*array.factories.add(i)).unmaker {
                    unmake(*reg);
                }
            }
        }
    }));
}
"""


def rust_regenerate_command(targets: Iterable[str], output: str | os.PathLike[str]) -> str:
    """The command that writes the module again (what its first comment says)."""
    return f"python -m plugin_annotations rust {' '.join(targets)} -o {os.fspath(output)}"


def _trait_section(spec: TraitSpec, module: str) -> tuple[list[str], list[str], list[str], list[str]]:
    """The items of one trait, and its arms of plugin_impl!, plugin_aggregates!, plugin_unmaker_counter!."""
    t, snake, upper = spec.name, _snake(spec.name), _snake(spec.name).upper()
    for m in spec.methods:
        for ct in (*(p.ctype for p in m.params), m.returns):
            if ct.kind not in _SUPPORTED:
                msg = f"{t}.{m.name}: the Rust generator does not support {ct.name} yet (write that method by hand)"
                raise ValueError(msg)
    declaration = encode_declaration(spec) + b"\0"
    fields = [f"    pub {_ident(m.name)}: Option<{_fn_type(m)}>," for m in spec.methods]
    fingerprints = ", ".join(f"0x{fp:016x}" for fp in spec.method_fingerprints)
    items = [
        "",
        f"// ---- trait {t} v{spec.version} " + "-" * max(4, 66 - len(t)),
        "",
        *_doc(spec.doc),
        f"/// Implement it, then register the type with `plugin_impl!({t}, Name, Type)`.",
        "/// The host may call from any thread, hence `Sync`.",
        f"pub trait {t}: Sync {{",
    ]
    for m in spec.methods:
        params = ", ".join(f"{_ident(p.name)}: {_rust_param(p.ctype)}" for p in m.params)
        ret = _rust_return(m.returns)
        items += _doc(m.doc, "    ")
        items.append(
            f"    fn {_ident(m.name)}(&self{', ' if params else ''}{params})" + (f" -> {ret};" if ret != "()" else ";")
        )
    items += [
        "}",
        "",
        f"/// The type tag of trait {t} (what `PluginFactory<{t}Tag>` is keyed by).",
        f"pub struct {t}Tag;",
        "",
        f"pub const {upper}_TRAIT_VERSION: u32 = {spec.version};",
        f"pub const {upper}_FINGERPRINT: u64 = 0x{spec.fingerprint:016x};",
        f"pub const {upper}_METHOD_COUNT: u32 = {len(spec.methods)};",
        f"/// The trait's declaration, as `plugin_trait_declaration_{t}_v1` embeds it (NUL-terminated).",
        f"pub const {upper}_DECLARATION: [u8; {len(declaration)}] = *b{_rust_bytes(declaration)};",
        "",
        f"/// `{t}VTable`: the methods after their own size, in declaration order.",
        "#[repr(C)]",
        f"pub struct {t}VTable {{",
        "    pub size: usize,",
        *fields,
        "}",
        "",
        f"/// The type of `plugin_abi_descriptor_{t}_v1`.",
        "#[repr(C)]",
        f"pub struct {t}AbiDescriptor {{",
        "    pub header: PluginAbiDescriptor,",
        f"    pub method_fingerprints: [u64; {len(spec.methods)}],",
        "}",
        "",
        f"const _: () = assert!(std::mem::size_of::<{t}VTable>() == "
        f"std::mem::size_of::<usize>() * {1 + len(spec.methods)});",
        "",
        f"pub const {upper}_ABI_DESCRIPTOR: {t}AbiDescriptor = {t}AbiDescriptor {{",
        "    header: PluginAbiDescriptor {",
        f"        struct_size: std::mem::size_of::<{t}AbiDescriptor>() as u32,",
        "        abi_version: PLUGIN_ABI_VERSION,",
        f"        trait_version: {upper}_TRAIT_VERSION,",
        "        registration_size: std::mem::size_of::<PluginRegistration>() as u32,",
        f"        vtable_size: std::mem::size_of::<{t}VTable>() as u32,",
        f"        method_count: {upper}_METHOD_COUNT,",
        f"        fingerprint: {upper}_FINGERPRINT,",
        "    },",
        f"    method_fingerprints: [{fingerprints}],",
        "};",
        "",
        f"/// The unmaker calls of {t} in this library (what `plugin_unmaker_counter_{t}_v1` returns).",
        f"pub static {upper}_UNMAKER_COUNT: AtomicUsize = AtomicUsize::new(0);",
        "",
        "/// The vtable of implementation `T`, every slot a panic-containing thunk.",
        f"pub const fn {snake}_vtable<T: {t}>() -> {t}VTable {{",
        f"    {t}VTable {{",
        f"        size: std::mem::size_of::<{t}VTable>(),",
        *[f"        {_ident(m.name)}: Some({snake}_{m.name}_thunk::<T>)," for m in spec.methods],
        "    }",
        "}",
    ]
    for m in spec.methods:
        items += ["", *_thunk(spec, m)]
    abi = f"$crate::{module}"
    impl_arms = textwrap.dedent(
        f"""\
        ({t}, $name:ident, $ty:ty) => {{
            $crate::plugin_impl!({t}, $name, $ty, <$ty as ::core::default::Default>::default());
        }};
        ({t}, $name:ident, $ty:ty, $make:expr) => {{
            const _: () = {{
                static VTABLE: {abi}::{t}VTable = {abi}::{snake}_vtable::<$ty>();
                #[unsafe(export_name = concat!("plugin_register_{t}_", stringify!($name), "_v{ABI_VERSION}"))]
                extern "C" fn maker() -> *mut {abi}::PluginRegistration {{
                    {abi}::make_registration(
                        "{t}\\0",
                        concat!(stringify!($name), "\\0"),
                        {abi}::{upper}_TRAIT_VERSION,
                        ::std::mem::size_of::<{abi}::{t}VTable>(),
                        &VTABLE as *const {abi}::{t}VTable as *const ::std::os::raw::c_void,
                        || -> $ty {{ $make }},
                    )
                }}
                #[unsafe(export_name = concat!("plugin_unregister_{t}_", stringify!($name), "_v{ABI_VERSION}"))]
                unsafe extern "C" fn unmaker(reg: *mut {abi}::PluginRegistration) {{
                    unsafe {{ {abi}::release_registration::<$ty>(reg, &{abi}::{upper}_UNMAKER_COUNT) }}
                }}
                impl {abi}::PluginFactory<{abi}::{t}Tag> for $ty {{
                    const FACTORY: {abi}::PluginRegistrationFactory =
                        {abi}::PluginRegistrationFactory {{ maker: Some(maker), unmaker: Some(unmaker) }};
                }}
            }};
        }};
        """
    )
    counter_arm = textwrap.dedent(
        f"""\
        ({t}) => {{
            const _: () = {{
                #[unsafe(export_name = "plugin_unmaker_counter_{t}_v{ABI_VERSION}")]
                extern "C" fn counter() -> usize {{
                    {abi}::{upper}_UNMAKER_COUNT.load(::std::sync::atomic::Ordering::SeqCst)
                }}
                #[unsafe(export_name = "plugin_abi_descriptor_{t}_v{ABI_VERSION}")]
                static DESCRIPTOR: {abi}::{t}AbiDescriptor = {abi}::{upper}_ABI_DESCRIPTOR;
                #[unsafe(export_name = "plugin_trait_declaration_{t}_v{ABI_VERSION}")]
                static DECLARATION: [u8; {len(declaration)}] = {abi}::{upper}_DECLARATION;
            }};
        }};
        """
    )
    aggregate_arm = textwrap.dedent(
        f"""\
        ({t}; $($ty:ty),* $(,)?) => {{
            $crate::plugin_unmaker_counter!({t});
            const _: () = {{
                static FACTORIES: &[{abi}::PluginRegistrationFactory] =
                    &[$(<$ty as {abi}::PluginFactory<{abi}::{t}Tag>>::FACTORY),*];
                #[unsafe(export_name = "plugin_register_all_{t}_v{ABI_VERSION}")]
                extern "C" fn register_all() -> *mut {abi}::PluginRegistrationArray {{
                    {abi}::register_all(FACTORIES)
                }}
                #[unsafe(export_name = "plugin_unregister_all_{t}_v{ABI_VERSION}")]
                unsafe extern "C" fn unregister_all(array: *mut {abi}::PluginRegistrationArray) {{
                    unsafe {{ {abi}::unregister_all(array) }}
                }}
            }};
        }};
        """
    )
    return items, [impl_arms], [aggregate_arm], [counter_arm]


def _rust_bytes(data: bytes) -> str:
    """``data`` as the body of a Rust byte string literal (``b"..."``), printable ASCII kept."""
    out = []
    for byte in data:
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= byte < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\x{byte:02x}")
    return '"' + "".join(out) + '"'


def _macro(name: str, doc: str, arms: list[str]) -> list[str]:
    return [
        "",
        *_doc(doc),
        "#[macro_export]",
        f"macro_rules! {name} {{",
        *[textwrap.indent(arm, "    ").rstrip() for arm in arms],
        "}",
    ]


def generate_rust_module(
    traits: Iterable[TraitLike], module: str = "plugin_abi", command: str = "python -m plugin_annotations rust"
) -> str:
    """The Rust module text for ``traits`` (deterministic, so a committed copy can be checked for staleness).

    :param module: the module's name at the crate root (the macros say ``$crate::<module>``).
    :param command: the regeneration command its first comment names.
    """
    specs = [resolve_trait(t) for t in traits]
    if not specs:
        raise ValueError("no traits to generate")
    names = ", ".join(f"{s.name} v{s.version}" for s in specs)
    sources = ", ".join(s.source or "built from data" for s in specs)
    out = [
        f"//! GENERATED from the Python declaration of {names} ({sources});",
        f"//! do not edit: regenerate with `{command}`.",
        "//!",
        f"//! Declare it at the crate root (`mod {module};`): the macros name `$crate::{module}`.",
        "//! No dependencies: std only.  See plugin_annotations/_rust.py and the README's",
        '//! "Writing a plugin in Rust".',
        "#![allow(dead_code, non_camel_case_types, non_snake_case, non_upper_case_globals)]",
        "#![allow(clippy::all)]",
    ]
    out += _COMMON.replace("@ABI_VERSION@", str(ABI_VERSION)).rstrip().split("\n")
    impl_arms: list[str] = []
    aggregate_arms: list[str] = []
    counter_arms: list[str] = []
    for spec in specs:
        items, impl_arm, aggregate_arm, counter_arm = _trait_section(spec, module)
        out += items
        impl_arms += impl_arm
        aggregate_arms += aggregate_arm
        counter_arms += counter_arm
    out += _macro(
        "plugin_impl",
        "`PLUGIN_IMPL`: `plugin_impl!(Trait, Name, Type)` (a `Default` instance) or\n"
        "`plugin_impl!(Trait, Name, Type, expression)`: exports the maker and unmaker of implementation `Name`.",
        impl_arms,
    )
    out += _macro(
        "plugin_aggregates",
        "`PLUGIN_AGGREGATES`: `plugin_aggregates!(Trait; TypeA, TypeB)`, once per library and trait: the\n"
        "aggregate over those types, its release, the unmaker counter, the descriptor and the declaration.",
        aggregate_arms,
    )
    out += _macro(
        "plugin_unmaker_counter",
        "`PLUGIN_UNMAKER_COUNTER`: `plugin_unmaker_counter!(Trait)`, for a library with `plugin_impl!`s\n"
        "but no aggregate: the counter, the descriptor and the declaration.",
        counter_arms,
    )
    return "\n".join(out) + "\n"


def write_rust_module(
    path: str | os.PathLike[str],
    traits: Iterable[TraitLike],
    *,
    module: str | None = None,
    targets: Iterable[str] = (),
    check: bool = False,
) -> bool:
    """Write (or with ``check``, compare) the module for ``traits`` at ``path``.

    :param module: its name at the crate root; default: the file's stem.
    :param targets: the command-line targets, for the regeneration command it names.
    :returns: whether the file was written (with ``check``: whether it is stale).
    """
    target = Path(path)
    names = list(targets) or [resolve_trait(t).source or resolve_trait(t).name for t in traits]
    command = rust_regenerate_command(names, path)
    if module:
        command += f" --module {module}"
    text = generate_rust_module(traits, module or target.stem, command)
    try:
        current = target.read_text()
    except FileNotFoundError:
        current = None
    if current == text:
        return False
    if not check:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return True
