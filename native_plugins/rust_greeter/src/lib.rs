//! rust_greeter -- demonstrates a Rust plugin with no crates: the module
//! `plugin_abi.rs` is generated (`python -m plugin_annotations rust
//! plugin_interface:Greeter -o native_plugins/rust_greeter/src/plugin_abi.rs`),
//! the types implement its `Greeter` trait, and the macros export them.  The
//! three greeters answer as c_greeter's and cpp_greeter's do; `--cfg
//! NO_AGGREGATE` (the builder's `defines`) leaves the aggregate out (the
//! host-owned path).  A panic stays inside the plugin: the host sees NULL.

// NO_AGGREGATE comes from the builder's `defines` (rustc --cfg); built by Cargo,
// whose check-cfg does not know it, it would be an unexpected cfg.
#![allow(unexpected_cfgs)]

mod plugin_abi;

use plugin_abi::Greeter;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Static state: fresh after every reload.
static CALLS: AtomicUsize = AtomicUsize::new(0);

#[derive(Default)]
pub struct English;

impl Greeter for English {
    fn greet(&self, name: &str) -> String {
        format!("Hello, {name}!")
    }
}

#[derive(Default)]
pub struct French;

impl Greeter for French {
    fn greet(&self, name: &str) -> String {
        format!("Bonjour, {name}!")
    }
}

#[derive(Default)]
pub struct Counting;

impl Greeter for Counting {
    fn greet(&self, name: &str) -> String {
        if name.is_empty() {
            panic!("Counting.greet: an empty name");
        }
        let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        format!("call {n}, {name}")
    }
}

plugin_impl!(Greeter, English, English);
plugin_impl!(Greeter, French, French);
plugin_impl!(Greeter, Counting, Counting);

#[cfg(not(NO_AGGREGATE))]
plugin_aggregates!(Greeter; English, French, Counting);
#[cfg(NO_AGGREGATE)]
plugin_unmaker_counter!(Greeter);
