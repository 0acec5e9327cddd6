"""Generate a dependency-free Rust module from trait declarations.

``python -m plugin_annotations rust MODULE[:TRAIT] ... -o src/plugin_abi.rs`` writes one
module with, for every trait: the ``#[repr(C)]`` registration, array, factory,
bytes and descriptor types of ``plugin_interface.h``; the trait's structs (each
with a compile-time check of every field offset and the size, as the C header's
``_Static_assert``\\ s); the trait's vtable and descriptor types; the descriptor
and the embedded declaration as constants; a safe Rust ``trait`` to implement;
``extern "C"`` thunks that convert the C arguments and results and run every
call under ``catch_unwind``; and the ``macro_rules!`` equivalents of the C
macros::

    plugin_impl!(Greeter, English, EnglishGreeter);            // PLUGIN_IMPL
    plugin_impl!(Greeter, Named, Named, Named::new("x"));       // PLUGIN_IMPL_WITH_STATE
    plugin_aggregates!(Greeter; EnglishGreeter, Named);         // PLUGIN_AGGREGATES
    plugin_unmaker_counter!(Greeter);                           // PLUGIN_UNMAKER_COUNTER

What the trait's methods take and return, per marker:

==========================  ===================================  =====================================
marker                      C (the vtable slot)                  Rust (the trait method)
==========================  ===================================  =====================================
``I8`` ... ``U64``,         ``int8_t`` ... ``uint64_t``,         ``i8`` ... ``u64``, ``usize``,
``Size``, ``F32``,          ``size_t``, ``float``, ``double``,   ``f32``, ``f64``, ``bool``
``F64``, ``Bool``           ``_Bool``
``CStr``                    ``const char *``                     ``&str`` (NULL: ``""``; invalid
                                                                 UTF-8 replaced, as the host decodes)
``Buffer`` / ``MutBuffer``  ``(const) uint8_t *, size_t``        ``&[u8]`` / ``&mut [u8]``
``Array[T]`` /              ``(const) T *, size_t``              ``&[T]`` / ``&mut [T]``
``MutArray[T]``
``Out[T]``                  ``T *``                              ``&mut T`` (starts at zero; written
                                                                 back when the method returns)
``Callback[[A..], R]``      ``R (*)(void *, A..), void *``       ``&dyn Fn(A..) -> R`` (for the call
                                                                 only; ``CStr`` arguments as ``&str``)
``Handle[K]`` (parameter)   ``void *``                           ``&Self::K``
``Drop[K]``                 ``void *``                           ``Self::K`` (yours to drop)
a struct ``S``              ``S``                                ``S`` (``#[repr(C)]``, ``Copy``)
``Ref[S]`` / ``MutRef[S]``  ``const S *`` / ``S *``              ``&S`` / ``&mut S``
result ``OwnedStr``         ``char *``                           ``String``
result ``OwnedBytes``       ``PluginBytes``                      ``Vec<u8>``
result ``Status``           ``int32_t``, ``char **error`` last   ``Result<(), PluginError>``
result ``Handle[K]``        ``void *``                           ``Option<Self::K>`` (``None``: NULL)
result ``None``             ``void``                             ``()``
==========================  ===================================  =====================================

``K`` is an associated type of the trait (``type Session: Send + Sync + 'static``):
the object lives in a box tagged with its type, so a handle of another
implementation is refused instead of misread.  Slices, ``Ref`` and ``MutRef``
are the caller's memory; a pointer misaligned for its type is copied (and, for
the ``Mut`` ones, copied back), since a Rust reference may not be misaligned.
A ``Bool`` array item that is neither 0 nor 1 reads as ``true``.

Ownership mirrors ``plugin_annotations.h``: results (strings, bytes, error
messages) are ``malloc``'d and the registration's ``free_memory`` is ``free``,
so what the host releases goes back to the allocator that made it;
``PLUGIN_OWNED_ALLOCATED`` and ``PLUGIN_OWNED_RELEASED`` count both sides.

Panics: every entry point (maker, unmaker, aggregate, thunks) runs under
``catch_unwind``, and what the caller sees then is the method's error path: a
``Status`` method returns -1 and ``panic: <message>`` in ``*error``; an
``OwnedStr`` or ``Handle`` method returns NULL and an ``OwnedBytes`` one
``{NULL, 1}`` (the host raises ``PluginCallError``); a scalar or struct returns
its zero; a maker whose constructor panics returns NULL.  A NULL ``Ref``,
``MutRef`` or handle, or a handle of another implementation, is such a panic.

Rust has no link-time collection without crates (``inventory``), so the
aggregate lists its implementation types.  The module uses only ``std``; the
macros are ``#[macro_export]`` and name the module as ``$crate::<module>``
(the output file's stem unless ``--module`` says otherwise), so it belongs at
the crate root: ``mod plugin_abi;``.  It compiles warning-free with
``-D warnings`` in editions 2021 and 2024 (``#[unsafe(export_name)]``,
``unsafe extern``: rustc 1.82 or later).
"""

from __future__ import annotations

import inspect
import os
import textwrap
from collections.abc import Iterable
from pathlib import Path

from plugin_interface import (
    ABI_VERSION,
    CType,
    MethodSpec,
    StructField,
    StructSpec,
    TraitSpec,
    TypeKind,
    encode_declaration,
    resolve_trait,
)
from plugin_interface._traits import TraitLike

from ._headers import _structs_of

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
_KEYWORDS = frozenset(
    "as async await break const continue crate dyn else enum extern false fn for if impl in let loop match mod "
    "move mut pub ref return self Self static struct super trait true type unsafe use where while abstract become "
    "box do final gen macro override priv try typeof unsized virtual yield".split()
)
#: Type names the generated module uses (its imports, the prelude, the primitives and its own types): a struct
#: of one of these names would shadow it.
_TAKEN_TYPE_NAMES = frozenset(
    "AssertUnwindSafe AtomicUsize CStr CString Cow Ordering TypeId c_char c_void ptr std core alloc "
    "Option Some None Result Ok Err String Vec Box Default Clone Copy Send Sync Sized Drop Fn FnMut FnOnce "
    "Iterator IntoIterator Extend ToOwned ToString PartialEq PartialOrd Eq Ord AsRef AsMut Into From TryFrom "
    "TryInto Unpin DoubleEndedIterator ExactSizeIterator FromIterator Debug "
    "i8 i16 i32 i64 i128 isize u8 u16 u32 u64 u128 usize f32 f64 bool char str "
    "PluginRegistration PluginRegistrationFactory PluginRegistrationArray PluginBytes PluginAbiDescriptor "
    "PluginError PluginFactory InOut HandleBox".split()
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


def _item(ct: CType) -> str:
    """The Rust type of an array's or out-parameter's item (the struct of an ``Out[Point]``)."""
    if ct.struct is not None:
        return _struct_name(ct)
    assert ct.item is not None
    return _scalar(ct.item)


def _struct_name(ct: CType) -> str:
    assert ct.struct is not None
    return str(ct.struct.name)


def _handle_kind(ct: CType) -> str:
    """``Session`` for ``Handle[Session]`` and ``Drop[Session]``."""
    return ct.name.partition("[")[2].rstrip("]")


def _callback_fn(ct: CType) -> str:
    """The C function pointer type of a callback, in Rust."""
    *args, result = ct.signature
    params = ["*mut c_void", *(_c_params(a)[0] for a in args)]
    ret = "" if result.kind is TypeKind.VOID else f" -> {_scalar(result)}"
    return f'unsafe extern "C" fn({", ".join(params)}){ret}'


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
        return [f"*const {_item(ct)}", "usize"]
    if kind is TypeKind.MUTARRAY:
        return [f"*mut {_item(ct)}", "usize"]
    if kind is TypeKind.OUT:
        return [f"*mut {_item(ct)}"]
    if kind is TypeKind.CALLBACK:
        return [f"Option<{_callback_fn(ct)}>", "*mut c_void"]
    if kind in (TypeKind.HANDLE, TypeKind.DROP):
        return ["*mut c_void"]
    if kind is TypeKind.STRUCT:
        return [_struct_name(ct)]
    if kind is TypeKind.STRUCT_REF:
        return [f"*const {_struct_name(ct)}"]
    if kind is TypeKind.STRUCT_MUTREF:
        return [f"*mut {_struct_name(ct)}"]
    return [_scalar(ct)]


def _c_return(ct: CType) -> str:
    """The raw C return type, in Rust (``""`` for void)."""
    kind = ct.kind
    if kind is TypeKind.VOID:
        return ""
    if kind is TypeKind.STRUCT:
        return _struct_name(ct)
    special = {
        TypeKind.OWNEDSTR: "*mut c_char",
        TypeKind.OWNEDBYTES: "PluginBytes",
        TypeKind.STATUS: "i32",
        TypeKind.HANDLE: "*mut c_void",
    }
    return special.get(kind) or _scalar(ct)


def _rust_param(ct: CType) -> str:
    """The type the safe trait method takes."""
    kind = ct.kind
    if kind is TypeKind.CSTR:
        return "&str"
    if kind is TypeKind.BUFFER:
        return "&[u8]"
    if kind is TypeKind.MUTBUFFER:
        return "&mut [u8]"
    if kind is TypeKind.ARRAY:
        return f"&[{_item(ct)}]"
    if kind is TypeKind.MUTARRAY:
        return f"&mut [{_item(ct)}]"
    if kind is TypeKind.OUT:
        return f"&mut {_item(ct)}"
    if kind is TypeKind.CALLBACK:
        *args, result = ct.signature
        params = ", ".join("&str" if a.kind is TypeKind.CSTR else _scalar(a) for a in args)
        ret = "" if result.kind is TypeKind.VOID else f" -> {_scalar(result)}"
        return f"&dyn Fn({params}){ret}"
    if kind is TypeKind.HANDLE:
        return f"&Self::{_ident(_handle_kind(ct))}"
    if kind is TypeKind.DROP:
        return f"Self::{_ident(_handle_kind(ct))}"
    if kind is TypeKind.STRUCT:
        return _struct_name(ct)
    if kind is TypeKind.STRUCT_REF:
        return f"&{_struct_name(ct)}"
    if kind is TypeKind.STRUCT_MUTREF:
        return f"&mut {_struct_name(ct)}"
    return _scalar(ct)


def _rust_return(ct: CType) -> str:
    kind = ct.kind
    if kind is TypeKind.HANDLE:
        return f"Option<Self::{_ident(_handle_kind(ct))}>"
    if kind is TypeKind.STRUCT:
        return _struct_name(ct)
    return {
        TypeKind.OWNEDSTR: "String",
        TypeKind.OWNEDBYTES: "Vec<u8>",
        TypeKind.STATUS: "Result<(), PluginError>",
        TypeKind.VOID: "()",
    }.get(kind) or _scalar(ct)


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


def _convert(spec: TraitSpec, m: MethodSpec, i: int) -> tuple[list[str], list[str], str, list[str]]:
    """Parameter ``i`` of ``m`` in a thunk: its raw C parameters, the statements that make the Rust
    argument, the argument expression, and the statements after the call."""
    p = m.params[i]
    ct, a, kind = p.ctype, f"a{i}", p.ctype.kind
    raw = _c_params(ct)
    what = f'"{spec.name}.{m.name}: {p.name}"'
    is_bool = ct.item is not None and ct.item.name == "Bool"
    if kind in (TypeKind.SCALAR, TypeKind.STRUCT):
        return [f"{a}: {raw[0]}"], [], a, []
    if kind is TypeKind.CSTR:
        return [f"{a}: {raw[0]}"], [f"let {a} = unsafe {{ str_arg({a}) }};"], f"&*{a}", []
    if kind in (TypeKind.BUFFER, TypeKind.ARRAY):
        fn = "bool_slice_arg" if is_bool else "slice_arg"
        return [f"{a}: {raw[0]}", f"{a}_len: usize"], [f"let {a} = unsafe {{ {fn}({a}, {a}_len) }};"], f"&*{a}", []
    if kind in (TypeKind.MUTBUFFER, TypeKind.MUTARRAY):
        fn = "bool_slice_mut_arg" if is_bool else "slice_mut_arg"
        convert = [f"let mut {a} = unsafe {{ {fn}({a}, {a}_len) }};"]
        return [f"{a}: {raw[0]}", f"{a}_len: usize"], convert, f"{a}.get()", []
    if kind is TypeKind.OUT:
        convert = [f"let mut {a}_value: {_item(ct)} = Default::default();"]
        return [f"{a}: {raw[0]}"], convert, f"&mut {a}_value", [f"unsafe {{ out_write({a}, {a}_value) }};"]
    if kind is TypeKind.CALLBACK:
        *args, result = ct.signature
        params, call, strings = [], [f"{a}_context"], []
        for j, arg in enumerate(args):
            if arg.kind is TypeKind.CSTR:
                params.append(f"x{j}: &str")
                strings.append(f"    let x{j} = c_string(x{j});")
                call.append(f"x{j}.as_ptr()")
            else:
                params.append(f"x{j}: {_scalar(arg)}")
                call.append(f"x{j}")
        ret = "" if result.kind is TypeKind.VOID else f" -> {_scalar(result)}"
        convert = [
            f"let {a} = move |{', '.join(params)}|{ret} {{",
            *strings,
            f"    match {a} {{",
            f"        Some(f) => unsafe {{ f({', '.join(call)}) }},",
            "        None => Default::default(),",
            "    }",
            "};",
        ]
        return [f"{a}: {raw[0]}", f"{a}_context: *mut c_void"], convert, f"&{a}", []
    if kind in (TypeKind.HANDLE, TypeKind.DROP):
        fn = "handle_arg" if kind is TypeKind.HANDLE else "take_handle"
        convert = [f"let {a} = unsafe {{ {fn}::<T::{_ident(_handle_kind(ct))}>({a}, {what}) }};"]
        return [f"{a}: {raw[0]}"], convert, a, []
    if kind is TypeKind.STRUCT_REF:
        return [f"{a}: {raw[0]}"], [f"let {a} = unsafe {{ ref_arg({a}, {what}) }};"], f"&*{a}", []
    if kind is TypeKind.STRUCT_MUTREF:
        convert = [f"let mut {a} = unsafe {{ mut_ref_arg({a}, {what}) }};"]
        return [f"{a}: {raw[0]}"], convert, f"&mut {a}.get()[0]", []
    raise ValueError(f"{spec.name}.{m.name}: the Rust generator does not know {ct.name}")  # a new marker


def _thunk(spec: TraitSpec, m: MethodSpec) -> list[str]:
    """The ``extern "C"`` function of one vtable slot, generic over the implementing type."""
    params = ["this: *mut c_void"]
    converts: list[str] = []
    args: list[str] = ["this"]
    posts: list[str] = []
    for i in range(len(m.params)):
        raw, convert, arg, post = _convert(spec, m, i)
        params += raw
        converts += convert
        args.append(arg)
        posts += post
    kind = m.returns.kind
    if kind is TypeKind.STATUS:
        params.append("error: *mut *mut c_char")
    ret = _c_return(m.returns)
    call = f"<T as {spec.name}>::{_ident(m.name)}({', '.join(args)})"
    if kind is TypeKind.HANDLE:
        handle = f"T::{_ident(_handle_kind(m.returns))}"
        result = [f"let r = {call};", *posts, f"r.map_or(ptr::null_mut(), into_handle::<{handle}>)"]
    elif posts:
        result = [f"let r = {call};", *posts, "r"]
    else:
        result = [call]
    name = f"{_snake(spec.name)}_{m.name}_thunk"
    head = f'pub unsafe extern "C" fn {name}<T: {spec.name}>({", ".join(params)})' + (f" -> {ret}" if ret else "")
    body = [
        "    let result = catch_unwind(AssertUnwindSafe(|| {",
        "        // SAFETY: the host passes the instance its maker made (a T).",
        "        let this = unsafe { &*(this as *const T) };",
        *[f"        {line}" for line in converts + result],
        "    }));",
    ]
    if kind is TypeKind.OWNEDSTR:
        body.append("    result.map(|s| owned_str(&s)).unwrap_or(ptr::null_mut())")
    elif kind is TypeKind.OWNEDBYTES:
        body.append("    result.map(|b| owned_bytes(&b)).unwrap_or(PluginBytes::FAILED)")
    elif kind is TypeKind.STATUS:
        body.append("    unsafe { status_result(result, error) }")
    elif kind is TypeKind.HANDLE:
        body.append("    result.unwrap_or(ptr::null_mut())")
    elif kind is TypeKind.VOID:
        body.append("    let _ = result;")
    else:  # a scalar or a struct: its zero
        body.append("    result.unwrap_or_default()")
    return [
        f"/// The vtable slot of {spec.name}.{m.name}: converts, calls `T::{m.name}`, contains panics.",
        "///",
        "/// # Safety",
        "/// The arguments are what the C declaration promises, valid for the call.",
        head + " {",
        *body,
        "}",
    ]


def _field_type(f: StructField) -> str:
    base = f.type.name if isinstance(f.type, StructSpec) else _SCALARS[f.type.name]
    return f"[{base}; {f.count}]" if f.count > 1 else base


def _struct_items(struct: StructSpec) -> list[str]:
    """A ``#[repr(C)]`` struct, its zero ``Default``, and a const assertion per field offset and for the size."""
    name = struct.name
    doc = inspect.getdoc(struct.python_class) if struct.python_class is not None else ""
    items = [
        "",
        *_doc(doc or f"`{name}` as the host lays it out: {struct.type_name}."),
        "#[repr(C)]",
        "#[derive(Clone, Copy, Debug, PartialEq)]",
        f"pub struct {name} {{",
        *(f"    pub {_ident(f.name)}: {_field_type(f)}," for f in struct.fields),
        "}",
        "",
        f"impl Default for {name} {{",
        "    /// Every field zero (`0`, `0.0`, `false`).",
        "    fn default() -> Self {",
        "        // SAFETY: every field is an integer, a float, a bool or such a struct: zero bytes are one.",
        "        unsafe { std::mem::zeroed() }",
        "    }",
        "}",
        "",
    ]
    for f in struct.fields:
        offset = struct.offset(f.name)
        items.append(
            f"const _: () = assert!(std::mem::offset_of!({name}, {_ident(f.name)}) == {offset}, "
            f'"{name}.{f.name}: the host expects offset {offset}");'
        )
    items.append(
        f"const _: () = assert!(std::mem::size_of::<{name}>() == {struct.size}, "
        f'"{name}: the host expects {struct.size} bytes");'
    )
    return items


def _structs(specs: list[TraitSpec]) -> list[StructSpec]:
    """Every struct the traits use, each once, nested ones first.

    :raises ValueError: two layouts of one name, or a name the module's own types (or a trait's) have.
    """
    out: dict[str, StructSpec] = {}
    traits = {f"{s.name}{suffix}" for s in specs for suffix in ("", "Tag", "VTable", "AbiDescriptor")}
    for spec in specs:
        for struct in _structs_of(spec):
            known = out.get(struct.name)
            if known is not None and known.type_name != struct.type_name:
                msg = f"struct {struct.name}: two layouts in one Rust module ({known.type_name}, {struct.type_name})"
                raise ValueError(msg)
            if struct.name in _TAKEN_TYPE_NAMES or struct.name in traits or struct.name in _KEYWORDS:
                msg = (
                    f"{spec.name}: struct {struct.name} has a name the generated Rust module uses "
                    "(its imports, the prelude, a primitive or its own types): rename the struct"
                )
                raise ValueError(msg)
            out[struct.name] = struct
    return list(out.values())


_COMMON = """
use std::any::TypeId;
use std::borrow::Cow;
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

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

impl PluginBytes {
    /// No data, and a length: the method failed (panicked, or out of memory); the host raises
    /// `PluginCallError`.  (`{NULL, 0}` is an empty result.)
    pub const FAILED: PluginBytes = PluginBytes { data: ptr::null_mut(), len: 1 };
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

/// What a `Status` method returns on failure: a non-zero code and a message for the host
/// (`PluginMethodError(code, message)`).  `Err("message".into())` and `?` on a `String` error
/// give code -1.
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

impl From<String> for PluginError {
    fn from(message: String) -> Self {
        PluginError::new(-1, message)
    }
}

impl From<&str> for PluginError {
    fn from(message: &str) -> Self {
        PluginError::new(-1, message)
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "status {}: {}", self.code, self.message)
    }
}

/// An implementation type registered for the trait whose tag is `Tag` (made by `plugin_impl!`).
pub trait PluginFactory<Tag> {
    const FACTORY: PluginRegistrationFactory;
}

// ---- memory the host releases with free_memory --------------------------------

// The C library's allocator, as plugin_annotations.h has it: results are malloc'd and
// registration->free_memory is free(), so what the host releases goes back to the allocator
// that made it (and C code linked into the crate may hand malloc'd memory on too).
unsafe extern "C" {
    fn malloc(size: usize) -> *mut c_void;
    fn free(ptr: *mut c_void);
}

/// Results made by `plugin_alloc` so far (strings, bytes, error messages).
pub static PLUGIN_OWNED_ALLOCATED: AtomicUsize = AtomicUsize::new(0);
/// Of them, those released through `free_memory` (by the host): equal once all are released.
pub static PLUGIN_OWNED_RELEASED: AtomicUsize = AtomicUsize::new(0);

/// `n` bytes from `malloc`, for the host to release with the registration's `free_memory`
/// (NULL when out of memory).
pub fn plugin_alloc(n: usize) -> *mut u8 {
    // SAFETY: malloc takes any size; 0 is asked as 1, so a success is never NULL.
    let p = unsafe { malloc(n.max(1)) } as *mut u8;
    if !p.is_null() {
        PLUGIN_OWNED_ALLOCATED.fetch_add(1, Ordering::Relaxed);
    }
    p
}

/// `registration->free_memory`: `free` (NULL is ignored).
///
/// # Safety
/// `p` is NULL or came from `plugin_alloc` (or `malloc`) and was not released yet.
pub unsafe extern "C" fn plugin_free_memory(p: *mut c_void) {
    if !p.is_null() {
        PLUGIN_OWNED_RELEASED.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's promise.
        unsafe { free(p) };
    }
}

/// A NUL-terminated copy of `s` for an `OwnedStr` result (NULL when out of memory; C reads it up
/// to its first NUL).
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

/// A copy of `b` for an `OwnedBytes` result (`{NULL, 0}` when empty, `FAILED` when out of memory).
pub fn owned_bytes(b: &[u8]) -> PluginBytes {
    if b.is_empty() {
        return PluginBytes { data: ptr::null_mut(), len: 0 };
    }
    let p = plugin_alloc(b.len());
    if p.is_null() {
        return PluginBytes::FAILED;
    }
    // SAFETY: p has b.len() bytes.
    unsafe { ptr::copy_nonoverlapping(b.as_ptr(), p, b.len()) };
    PluginBytes { data: p, len: b.len() }
}

// ---- argument conversions ----------------------------------------------------------

fn is_aligned<T>(p: *const T) -> bool {
    (p as usize) % std::mem::align_of::<T>() == 0
}

/// A `CStr` argument: NULL is `""`, invalid UTF-8 is replaced (U+FFFD), as the host decodes.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for the call.
pub unsafe fn str_arg<'a>(p: *const c_char) -> Cow<'a, str> {
    if p.is_null() { Cow::Borrowed("") } else { unsafe { CStr::from_ptr(p) }.to_string_lossy() }
}

/// A `Buffer` or `Array[T]` argument: the caller's memory (NULL or empty: `&[]`), copied only
/// when it is misaligned for `T` (a Rust reference may not be).
///
/// # Safety
/// `p` is NULL or valid for `len` reads of T for the call.
pub unsafe fn slice_arg<'a, T: Copy>(p: *const T, len: usize) -> Cow<'a, [T]> {
    if p.is_null() || len == 0 {
        Cow::Borrowed(&[])
    } else if is_aligned(p) {
        Cow::Borrowed(unsafe { std::slice::from_raw_parts(p, len) })
    } else {
        Cow::Owned((0..len).map(|i| unsafe { p.add(i).read_unaligned() }).collect())
    }
}

/// An `Array[Bool]` argument: as `slice_arg`, an item that is neither 0 nor 1 read as `true`.
///
/// # Safety
/// As `slice_arg`.
pub unsafe fn bool_slice_arg<'a>(p: *const bool, len: usize) -> Cow<'a, [bool]> {
    let bytes = unsafe { slice_arg(p as *const u8, len) };
    if bytes.iter().all(|&b| b <= 1) {
        unsafe { slice_arg(p, len) }
    } else {
        Cow::Owned(bytes.iter().map(|&b| b != 0).collect())
    }
}

/// A `MutBuffer`, `MutArray[T]` or `MutRef[S]` argument: the caller's memory or, when it is
/// misaligned for `T`, a copy written back when the call ends (a panic included).
pub enum InOut<'a, T: Copy> {
    Direct(&'a mut [T]),
    Copied(*mut T, Vec<T>),
}

impl<T: Copy> InOut<'_, T> {
    /// The items, for the method.
    pub fn get(&mut self) -> &mut [T] {
        match self {
            InOut::Direct(items) => &mut **items,
            InOut::Copied(_, items) => &mut items[..],
        }
    }
}

impl<T: Copy> Drop for InOut<'_, T> {
    fn drop(&mut self) {
        if let InOut::Copied(p, items) = self {
            for (i, item) in items.iter().enumerate() {
                // SAFETY: p is valid for items.len() writes for the call (slice_mut_arg's promise).
                unsafe { p.add(i).write_unaligned(*item) };
            }
        }
    }
}

/// # Safety
/// `p` is NULL or valid for `len` reads and writes of T for the call.
pub unsafe fn slice_mut_arg<'a, T: Copy>(p: *mut T, len: usize) -> InOut<'a, T> {
    if p.is_null() || len == 0 {
        InOut::Direct(&mut [])
    } else if is_aligned(p) {
        InOut::Direct(unsafe { std::slice::from_raw_parts_mut(p, len) })
    } else {
        InOut::Copied(p, (0..len).map(|i| unsafe { p.add(i).read_unaligned() }).collect())
    }
}

/// A `MutArray[Bool]` argument: an item that is neither 0 nor 1 is made 1 (`true`) first.
///
/// # Safety
/// As `slice_mut_arg`.
pub unsafe fn bool_slice_mut_arg<'a>(p: *mut bool, len: usize) -> InOut<'a, bool> {
    if !p.is_null() {
        let bytes = p as *mut u8;
        for i in 0..len {
            // SAFETY: p is valid for len bytes; a bool's byte is read as a byte.
            unsafe {
                if bytes.add(i).read() > 1 {
                    bytes.add(i).write(1);
                }
            }
        }
    }
    unsafe { slice_mut_arg(p, len) }
}

/// A `Ref[S]` argument (a NULL pointer panics: the method's error path).
///
/// # Safety
/// `p` is NULL or valid for a read of T for the call.
pub unsafe fn ref_arg<'a, T: Copy>(p: *const T, what: &str) -> Cow<'a, T> {
    if p.is_null() {
        panic!("{what}: a NULL pointer");
    }
    if is_aligned(p) { Cow::Borrowed(unsafe { &*p }) } else { Cow::Owned(unsafe { p.read_unaligned() }) }
}

/// A `MutRef[S]` argument (a NULL pointer panics: the method's error path).
///
/// # Safety
/// `p` is NULL or valid for a read and a write of T for the call.
pub unsafe fn mut_ref_arg<'a, T: Copy>(p: *mut T, what: &str) -> InOut<'a, T> {
    if p.is_null() {
        panic!("{what}: a NULL pointer");
    }
    unsafe { slice_mut_arg(p, 1) }
}

/// After the call, an `Out[T]` value into the caller's pointer (NULL: nowhere).
///
/// # Safety
/// `p` is NULL or valid for a write of T.
pub unsafe fn out_write<T>(p: *mut T, value: T) {
    if !p.is_null() {
        unsafe { p.write_unaligned(value) };
    }
}

/// A callback's `&str` argument as C has it: NUL-terminated (cut at an interior NUL).
pub fn c_string(s: &str) -> CString {
    let bytes = s.as_bytes();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    CString::new(&bytes[..end]).unwrap_or_default()
}

// ---- plugin-side objects (Handle / Drop) ------------------------------------------

/// A handle's object, boxed with its type: a handle of another implementation (another type) is
/// refused instead of misread.
#[repr(C)]
struct HandleBox<S> {
    tag: TypeId,
    value: S,
}

/// A `Handle[K]` result: `value`, boxed, as the host's `void *`.
pub fn into_handle<S: 'static>(value: S) -> *mut c_void {
    Box::into_raw(Box::new(HandleBox { tag: TypeId::of::<S>(), value })) as *mut c_void
}

unsafe fn checked_handle<S: 'static>(p: *mut c_void, what: &str) -> *mut HandleBox<S> {
    if p.is_null() {
        panic!("{what}: a NULL handle");
    }
    // SAFETY: every handle is a HandleBox, whose first field (offset 0, repr(C)) is the tag.
    if unsafe { (p as *const TypeId).read_unaligned() } != TypeId::of::<S>() {
        panic!("{what}: a handle of another implementation");
    }
    p as *mut HandleBox<S>
}

/// A `Handle[K]` argument: the object (NULL, or another implementation's, panics).
///
/// # Safety
/// `p` is NULL or came from `into_handle` and was not taken yet.
pub unsafe fn handle_arg<'a, S: 'static>(p: *mut c_void, what: &str) -> &'a S {
    unsafe { &(*checked_handle::<S>(p, what)).value }
}

/// A `Drop[K]` argument: the object, out of its box (NULL, or another implementation's, panics).
///
/// # Safety
/// `p` is NULL or came from `into_handle` and was not taken yet; it is not used again.
pub unsafe fn take_handle<S: 'static>(p: *mut c_void, what: &str) -> S {
    unsafe { Box::from_raw(checked_handle::<S>(p, what)).value }
}

// ---- results ------------------------------------------------------------------------

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
    counter.fetch_add(1, Ordering::SeqCst);
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


def _handle_kinds(spec: TraitSpec) -> list[str]:
    """The handle kinds the trait's methods use, in order of first use."""
    kinds: list[str] = []
    for m in spec.methods:
        for ct in (m.returns, *(p.ctype for p in m.params)):
            if ct.kind in (TypeKind.HANDLE, TypeKind.DROP) and _handle_kind(ct) not in kinds:
                kinds.append(_handle_kind(ct))
    return kinds


def _trait_section(spec: TraitSpec, module: str) -> tuple[list[str], list[str], list[str], list[str]]:
    """The items of one trait, and its arms of plugin_impl!, plugin_aggregates!, plugin_unmaker_counter!."""
    t, snake, upper = spec.name, _snake(spec.name), _snake(spec.name).upper()
    declaration = encode_declaration(spec) + b"\0"
    fields = [f"    pub {_ident(m.name)}: Option<{_fn_type(m)}>," for m in spec.methods]
    fingerprints = ", ".join(f"0x{fp:016x}" for fp in spec.method_fingerprints)
    items = [
        "",
        f"// ---- trait {t} v{spec.version} " + "-" * max(4, 66 - len(t)),
        "",
        *_doc(spec.doc),
        f"/// Implement it, then register the type with `plugin_impl!({t}, Name, Type)`.",
        "/// The host may call from any thread, and release the instance on another: `Send + Sync`.",
        f"pub trait {t}: Send + Sync {{",
    ]
    for kind in _handle_kinds(spec):
        items += [
            f"    /// The plugin-side object behind `Handle[{kind}]`: made by the methods that return one",
            "    /// (`None` becomes NULL), lent to those that take one, and given to the one that takes",
            f"    /// `Drop[{kind}]`.  The host may use one object from several threads: `Send + Sync`.",
            f"    type {_ident(kind)}: Send + Sync + 'static;",
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
    structs = _structs(specs)
    if structs:
        out += ["", "// ---- structs " + "-" * 72]
        for struct in structs:
            out += _struct_items(struct)
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
