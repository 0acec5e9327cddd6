//! GENERATED from the Python declaration of ImageFilter v1 (plugin_host.examples.image_traits:ImageFilter);
//! do not edit: regenerate with `python -m plugin_annotations rust plugin_host.examples.image_traits:ImageFilter -o native_plugins/rust_image_filter/src/plugin_abi.rs`.
//!
//! Declare it at the crate root (`mod plugin_abi;`): the macros name `$crate::plugin_abi`.
//! No dependencies: std only.  See plugin_annotations/_rust.py and the README's
//! "Writing a plugin in Rust".
#![allow(dead_code, non_camel_case_types, non_snake_case, non_upper_case_globals)]
#![allow(clippy::all)]

use std::any::TypeId;
use std::borrow::Cow;
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The `_vN` suffix of every exported symbol (`PLUGIN_ABI_VERSION`).
pub const PLUGIN_ABI_VERSION: u32 = 1;

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

// ---- structs ------------------------------------------------------------------------

/// An 8-bit grey image's geometry: ``height`` rows of ``stride`` bytes, ``width`` of them pixels.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub stride: u32,
}

impl Default for Image {
    /// Every field zero (`0`, `0.0`, `false`).
    fn default() -> Self {
        // SAFETY: every field is an integer, a float, a bool or such a struct: zero bytes are one.
        unsafe { std::mem::zeroed() }
    }
}

const _: () = assert!(std::mem::offset_of!(Image, width) == 0, "Image.width: the host expects offset 0");
const _: () = assert!(std::mem::offset_of!(Image, height) == 4, "Image.height: the host expects offset 4");
const _: () = assert!(std::mem::offset_of!(Image, stride) == 8, "Image.stride: the host expects offset 8");
const _: () = assert!(std::mem::size_of::<Image>() == 12, "Image: the host expects 12 bytes");

/// A linear level adjustment: ``out = in * gain + offset``, clamped to 0..255.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Levels {
    pub gain: f32,
    pub offset: f32,
}

impl Default for Levels {
    /// Every field zero (`0`, `0.0`, `false`).
    fn default() -> Self {
        // SAFETY: every field is an integer, a float, a bool or such a struct: zero bytes are one.
        unsafe { std::mem::zeroed() }
    }
}

const _: () = assert!(std::mem::offset_of!(Levels, gain) == 0, "Levels.gain: the host expects offset 0");
const _: () = assert!(std::mem::offset_of!(Levels, offset) == 4, "Levels.offset: the host expects offset 4");
const _: () = assert!(std::mem::size_of::<Levels>() == 8, "Levels: the host expects 8 bytes");

// ---- trait ImageFilter v1 -------------------------------------------------------

/// Filters 8-bit grey images in place.
/// Implement it, then register the type with `plugin_impl!(ImageFilter, Name, Type)`.
/// The host may call from any thread, and release the instance on another: `Send + Sync`.
pub trait ImageFilter: Send + Sync {
    /// The plugin-side object behind `Handle[Session]`: made by the methods that return one
    /// (`None` becomes NULL), lent to those that take one, and given to the one that takes
    /// `Drop[Session]`.  The host may use one object from several threads: `Send + Sync`.
    type Session: Send + Sync + 'static;
    /// What the filter does.
    fn describe(&self) -> String;
    /// Invert every pixel; fails when ``pixels`` is shorter than the image.
    fn invert(&self, image: &Image, pixels: &mut [u8]) -> Result<(), PluginError>;
    /// Apply ``levels`` to every pixel.
    fn adjust(&self, image: &Image, pixels: &mut [u8], levels: Levels) -> Result<(), PluginError>;
    /// Call ``visit(row, sum of its pixels)`` per row until it returns false; the rows visited.
    fn rows(&self, image: &Image, pixels: &[u8], visit: &dyn Fn(u32, u64) -> bool) -> u32;
    /// A new session.
    fn open(&self, label: &str) -> Option<Self::Session>;
    /// Count the image into the session's statistics; the pixels seen so far.
    fn feed(&self, session: &Self::Session, image: &Image, pixels: &[u8]) -> u64;
    /// The session's statistics.
    fn report(&self, session: &Self::Session) -> String;
    /// Destroy a session.
    fn end(&self, session: Self::Session);
}

/// The type tag of trait ImageFilter (what `PluginFactory<ImageFilterTag>` is keyed by).
pub struct ImageFilterTag;

pub const IMAGE_FILTER_TRAIT_VERSION: u32 = 1;
pub const IMAGE_FILTER_FINGERPRINT: u64 = 0x4f7fe04b58ded5b0;
pub const IMAGE_FILTER_METHOD_COUNT: u32 = 8;
/// The trait's declaration, as `plugin_trait_declaration_ImageFilter_v1` embeds it (NUL-terminated).
pub const IMAGE_FILTER_DECLARATION: [u8; 999] = *b"plugin-host-trait/1\x0a{\"methods\":[{\"name\":\"describe\",\"params\":[],\"returns\":\"OwnedStr\"},{\"name\":\"invert\",\"params\":[[\"image\",\"Ref[Image{width:U32@0,height:U32@4,stride:U32@8}#12]\"],[\"pixels\",\"MutArray[U8]\"]],\"returns\":\"Status\"},{\"name\":\"adjust\",\"params\":[[\"image\",\"Ref[Image{width:U32@0,height:U32@4,stride:U32@8}#12]\"],[\"pixels\",\"MutArray[U8]\"],[\"levels\",\"Levels{gain:F32@0,offset:F32@4}#8\"]],\"returns\":\"Status\"},{\"name\":\"rows\",\"params\":[[\"image\",\"Ref[Image{width:U32@0,height:U32@4,stride:U32@8}#12]\"],[\"pixels\",\"Array[U8]\"],[\"visit\",\"Callback[[U32, U64], Bool]\"]],\"returns\":\"U32\"},{\"name\":\"open\",\"params\":[[\"label\",\"CStr\"]],\"returns\":\"Handle[Session]\"},{\"name\":\"feed\",\"params\":[[\"session\",\"Handle[Session]\"],[\"image\",\"Ref[Image{width:U32@0,height:U32@4,stride:U32@8}#12]\"],[\"pixels\",\"Array[U8]\"]],\"returns\":\"U64\"},{\"name\":\"report\",\"params\":[[\"session\",\"Handle[Session]\"]],\"returns\":\"OwnedStr\"},{\"name\":\"end\",\"params\":[[\"session\",\"Drop[Session]\"]],\"returns\":\"None\"}],\"name\":\"ImageFilter\",\"version\":1}\x00";

/// `ImageFilterVTable`: the methods after their own size, in declaration order.
#[repr(C)]
pub struct ImageFilterVTable {
    pub size: usize,
    pub describe: Option<unsafe extern "C" fn(*mut c_void) -> *mut c_char>,
    pub invert: Option<unsafe extern "C" fn(*mut c_void, *const Image, *mut u8, usize, *mut *mut c_char) -> i32>,
    pub adjust: Option<unsafe extern "C" fn(*mut c_void, *const Image, *mut u8, usize, Levels, *mut *mut c_char) -> i32>,
    pub rows: Option<unsafe extern "C" fn(*mut c_void, *const Image, *const u8, usize, Option<unsafe extern "C" fn(*mut c_void, u32, u64) -> bool>, *mut c_void) -> u32>,
    pub open: Option<unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void>,
    pub feed: Option<unsafe extern "C" fn(*mut c_void, *mut c_void, *const Image, *const u8, usize) -> u64>,
    pub report: Option<unsafe extern "C" fn(*mut c_void, *mut c_void) -> *mut c_char>,
    pub end: Option<unsafe extern "C" fn(*mut c_void, *mut c_void)>,
}

/// The type of `plugin_abi_descriptor_ImageFilter_v1`.
#[repr(C)]
pub struct ImageFilterAbiDescriptor {
    pub header: PluginAbiDescriptor,
    pub method_fingerprints: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<ImageFilterVTable>() == std::mem::size_of::<usize>() * 9);

pub const IMAGE_FILTER_ABI_DESCRIPTOR: ImageFilterAbiDescriptor = ImageFilterAbiDescriptor {
    header: PluginAbiDescriptor {
        struct_size: std::mem::size_of::<ImageFilterAbiDescriptor>() as u32,
        abi_version: PLUGIN_ABI_VERSION,
        trait_version: IMAGE_FILTER_TRAIT_VERSION,
        registration_size: std::mem::size_of::<PluginRegistration>() as u32,
        vtable_size: std::mem::size_of::<ImageFilterVTable>() as u32,
        method_count: IMAGE_FILTER_METHOD_COUNT,
        fingerprint: IMAGE_FILTER_FINGERPRINT,
    },
    method_fingerprints: [0x2e3623d0e517a684, 0x05163fe4e5cea7f1, 0x771c1b1e587c1ed7, 0xea717c63759bc26f, 0x60772b02da25a4f5, 0x593c9b4eecbd7216, 0xdacddcdad3e4e745, 0x031c701e6617c46a],
};

/// The unmaker calls of ImageFilter in this library (what `plugin_unmaker_counter_ImageFilter_v1` returns).
pub static IMAGE_FILTER_UNMAKER_COUNT: AtomicUsize = AtomicUsize::new(0);

/// The vtable of implementation `T`, every slot a panic-containing thunk.
pub const fn image_filter_vtable<T: ImageFilter>() -> ImageFilterVTable {
    ImageFilterVTable {
        size: std::mem::size_of::<ImageFilterVTable>(),
        describe: Some(image_filter_describe_thunk::<T>),
        invert: Some(image_filter_invert_thunk::<T>),
        adjust: Some(image_filter_adjust_thunk::<T>),
        rows: Some(image_filter_rows_thunk::<T>),
        open: Some(image_filter_open_thunk::<T>),
        feed: Some(image_filter_feed_thunk::<T>),
        report: Some(image_filter_report_thunk::<T>),
        end: Some(image_filter_end_thunk::<T>),
    }
}

/// The vtable slot of ImageFilter.describe: converts, calls `T::describe`, contains panics.
///
/// # Safety
/// The arguments are what the C declaration promises, valid for the call.
pub unsafe extern "C" fn image_filter_describe_thunk<T: ImageFilter>(this: *mut c_void) -> *mut c_char {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the host passes the instance its maker made (a T).
        let this = unsafe { &*(this as *const T) };
        <T as ImageFilter>::describe(this)
    }));
    result.map(|s| owned_str(&s)).unwrap_or(ptr::null_mut())
}

/// The vtable slot of ImageFilter.invert: converts, calls `T::invert`, contains panics.
///
/// # Safety
/// The arguments are what the C declaration promises, valid for the call.
pub unsafe extern "C" fn image_filter_invert_thunk<T: ImageFilter>(this: *mut c_void, a0: *const Image, a1: *mut u8, a1_len: usize, error: *mut *mut c_char) -> i32 {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the host passes the instance its maker made (a T).
        let this = unsafe { &*(this as *const T) };
        let a0 = unsafe { ref_arg(a0, "ImageFilter.invert: image") };
        let mut a1 = unsafe { slice_mut_arg(a1, a1_len) };
        <T as ImageFilter>::invert(this, &*a0, a1.get())
    }));
    unsafe { status_result(result, error) }
}

/// The vtable slot of ImageFilter.adjust: converts, calls `T::adjust`, contains panics.
///
/// # Safety
/// The arguments are what the C declaration promises, valid for the call.
pub unsafe extern "C" fn image_filter_adjust_thunk<T: ImageFilter>(this: *mut c_void, a0: *const Image, a1: *mut u8, a1_len: usize, a2: Levels, error: *mut *mut c_char) -> i32 {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the host passes the instance its maker made (a T).
        let this = unsafe { &*(this as *const T) };
        let a0 = unsafe { ref_arg(a0, "ImageFilter.adjust: image") };
        let mut a1 = unsafe { slice_mut_arg(a1, a1_len) };
        <T as ImageFilter>::adjust(this, &*a0, a1.get(), a2)
    }));
    unsafe { status_result(result, error) }
}

/// The vtable slot of ImageFilter.rows: converts, calls `T::rows`, contains panics.
///
/// # Safety
/// The arguments are what the C declaration promises, valid for the call.
pub unsafe extern "C" fn image_filter_rows_thunk<T: ImageFilter>(this: *mut c_void, a0: *const Image, a1: *const u8, a1_len: usize, a2: Option<unsafe extern "C" fn(*mut c_void, u32, u64) -> bool>, a2_context: *mut c_void) -> u32 {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the host passes the instance its maker made (a T).
        let this = unsafe { &*(this as *const T) };
        let a0 = unsafe { ref_arg(a0, "ImageFilter.rows: image") };
        let a1 = unsafe { slice_arg(a1, a1_len) };
        let a2 = move |x0: u32, x1: u64| -> bool {
            match a2 {
                Some(f) => unsafe { f(a2_context, x0, x1) },
                None => Default::default(),
            }
        };
        <T as ImageFilter>::rows(this, &*a0, &*a1, &a2)
    }));
    result.unwrap_or_default()
}

/// The vtable slot of ImageFilter.open: converts, calls `T::open`, contains panics.
///
/// # Safety
/// The arguments are what the C declaration promises, valid for the call.
pub unsafe extern "C" fn image_filter_open_thunk<T: ImageFilter>(this: *mut c_void, a0: *const c_char) -> *mut c_void {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the host passes the instance its maker made (a T).
        let this = unsafe { &*(this as *const T) };
        let a0 = unsafe { str_arg(a0) };
        let r = <T as ImageFilter>::open(this, &*a0);
        r.map_or(ptr::null_mut(), into_handle::<T::Session>)
    }));
    result.unwrap_or(ptr::null_mut())
}

/// The vtable slot of ImageFilter.feed: converts, calls `T::feed`, contains panics.
///
/// # Safety
/// The arguments are what the C declaration promises, valid for the call.
pub unsafe extern "C" fn image_filter_feed_thunk<T: ImageFilter>(this: *mut c_void, a0: *mut c_void, a1: *const Image, a2: *const u8, a2_len: usize) -> u64 {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the host passes the instance its maker made (a T).
        let this = unsafe { &*(this as *const T) };
        let a0 = unsafe { handle_arg::<T::Session>(a0, "ImageFilter.feed: session") };
        let a1 = unsafe { ref_arg(a1, "ImageFilter.feed: image") };
        let a2 = unsafe { slice_arg(a2, a2_len) };
        <T as ImageFilter>::feed(this, a0, &*a1, &*a2)
    }));
    result.unwrap_or_default()
}

/// The vtable slot of ImageFilter.report: converts, calls `T::report`, contains panics.
///
/// # Safety
/// The arguments are what the C declaration promises, valid for the call.
pub unsafe extern "C" fn image_filter_report_thunk<T: ImageFilter>(this: *mut c_void, a0: *mut c_void) -> *mut c_char {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the host passes the instance its maker made (a T).
        let this = unsafe { &*(this as *const T) };
        let a0 = unsafe { handle_arg::<T::Session>(a0, "ImageFilter.report: session") };
        <T as ImageFilter>::report(this, a0)
    }));
    result.map(|s| owned_str(&s)).unwrap_or(ptr::null_mut())
}

/// The vtable slot of ImageFilter.end: converts, calls `T::end`, contains panics.
///
/// # Safety
/// The arguments are what the C declaration promises, valid for the call.
pub unsafe extern "C" fn image_filter_end_thunk<T: ImageFilter>(this: *mut c_void, a0: *mut c_void) {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the host passes the instance its maker made (a T).
        let this = unsafe { &*(this as *const T) };
        let a0 = unsafe { take_handle::<T::Session>(a0, "ImageFilter.end: session") };
        <T as ImageFilter>::end(this, a0)
    }));
    let _ = result;
}

/// `PLUGIN_IMPL`: `plugin_impl!(Trait, Name, Type)` (a `Default` instance) or
/// `plugin_impl!(Trait, Name, Type, expression)`: exports the maker and unmaker of implementation `Name`.
#[macro_export]
macro_rules! plugin_impl {
    (ImageFilter, $name:ident, $ty:ty) => {
        $crate::plugin_impl!(ImageFilter, $name, $ty, <$ty as ::core::default::Default>::default());
    };
    (ImageFilter, $name:ident, $ty:ty, $make:expr) => {
        const _: () = {
            static VTABLE: $crate::plugin_abi::ImageFilterVTable = $crate::plugin_abi::image_filter_vtable::<$ty>();
            #[unsafe(export_name = concat!("plugin_register_ImageFilter_", stringify!($name), "_v1"))]
            extern "C" fn maker() -> *mut $crate::plugin_abi::PluginRegistration {
                $crate::plugin_abi::make_registration(
                    "ImageFilter\0",
                    concat!(stringify!($name), "\0"),
                    $crate::plugin_abi::IMAGE_FILTER_TRAIT_VERSION,
                    ::std::mem::size_of::<$crate::plugin_abi::ImageFilterVTable>(),
                    &VTABLE as *const $crate::plugin_abi::ImageFilterVTable as *const ::std::os::raw::c_void,
                    || -> $ty { $make },
                )
            }
            #[unsafe(export_name = concat!("plugin_unregister_ImageFilter_", stringify!($name), "_v1"))]
            unsafe extern "C" fn unmaker(reg: *mut $crate::plugin_abi::PluginRegistration) {
                unsafe { $crate::plugin_abi::release_registration::<$ty>(reg, &$crate::plugin_abi::IMAGE_FILTER_UNMAKER_COUNT) }
            }
            impl $crate::plugin_abi::PluginFactory<$crate::plugin_abi::ImageFilterTag> for $ty {
                const FACTORY: $crate::plugin_abi::PluginRegistrationFactory =
                    $crate::plugin_abi::PluginRegistrationFactory { maker: Some(maker), unmaker: Some(unmaker) };
            }
        };
    };
}

/// `PLUGIN_AGGREGATES`: `plugin_aggregates!(Trait; TypeA, TypeB)`, once per library and trait: the
/// aggregate over those types, its release, the unmaker counter, the descriptor and the declaration.
#[macro_export]
macro_rules! plugin_aggregates {
    (ImageFilter; $($ty:ty),* $(,)?) => {
        $crate::plugin_unmaker_counter!(ImageFilter);
        const _: () = {
            static FACTORIES: &[$crate::plugin_abi::PluginRegistrationFactory] =
                &[$(<$ty as $crate::plugin_abi::PluginFactory<$crate::plugin_abi::ImageFilterTag>>::FACTORY),*];
            #[unsafe(export_name = "plugin_register_all_ImageFilter_v1")]
            extern "C" fn register_all() -> *mut $crate::plugin_abi::PluginRegistrationArray {
                $crate::plugin_abi::register_all(FACTORIES)
            }
            #[unsafe(export_name = "plugin_unregister_all_ImageFilter_v1")]
            unsafe extern "C" fn unregister_all(array: *mut $crate::plugin_abi::PluginRegistrationArray) {
                unsafe { $crate::plugin_abi::unregister_all(array) }
            }
        };
    };
}

/// `PLUGIN_UNMAKER_COUNTER`: `plugin_unmaker_counter!(Trait)`, for a library with `plugin_impl!`s
/// but no aggregate: the counter, the descriptor and the declaration.
#[macro_export]
macro_rules! plugin_unmaker_counter {
    (ImageFilter) => {
        const _: () = {
            #[unsafe(export_name = "plugin_unmaker_counter_ImageFilter_v1")]
            extern "C" fn counter() -> usize {
                $crate::plugin_abi::IMAGE_FILTER_UNMAKER_COUNT.load(::std::sync::atomic::Ordering::SeqCst)
            }
            #[unsafe(export_name = "plugin_abi_descriptor_ImageFilter_v1")]
            static DESCRIPTOR: $crate::plugin_abi::ImageFilterAbiDescriptor = $crate::plugin_abi::IMAGE_FILTER_ABI_DESCRIPTOR;
            #[unsafe(export_name = "plugin_trait_declaration_ImageFilter_v1")]
            static DECLARATION: [u8; 999] = $crate::plugin_abi::IMAGE_FILTER_DECLARATION;
        };
    };
}
