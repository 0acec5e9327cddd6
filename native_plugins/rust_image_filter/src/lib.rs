//! rust_image_filter -- demonstrates a Rust plugin of a user-declared trait (ImageFilter, declared
//! in ../image_traits.py) over most of the vocabulary: a struct by pointer (`&Image`) and by value
//! (`Levels`), an in/out pixel slice, a `Status` result (`Result<(), PluginError>`), a callback
//! (`&dyn Fn`) and a session object (the trait's `type Session`).  `src/plugin_abi.rs` is generated
//! (`python -m plugin_annotations rust plugin_host.examples.image_traits:ImageFilter -o
//! native_plugins/rust_image_filter/src/plugin_abi.rs`).  It answers as image_filter.c does.

mod plugin_abi;

use plugin_abi::{Image, ImageFilter, Levels, PluginError};
use std::ops::Range;
use std::sync::Mutex;

/// A session: its label and what it was fed (a `Handle[Session]` for the host).
pub struct Stats {
    label: String,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    pixels: u64,
    total: u64,
}

/// Fails, as image_filter.c does, when the image does not fit the pixels.
fn check(image: &Image, len: usize) -> Result<(), PluginError> {
    if image.stride as usize * image.height as usize > len || image.width > image.stride {
        let message = format!(
            "{} rows of {} bytes ({} pixels each) do not fit {} bytes",
            image.height, image.stride, image.width, len
        );
        return Err(PluginError::new(1, message));
    }
    Ok(())
}

/// The pixels of each whole row the buffer holds (`width` of every `stride` bytes).
fn rows(image: &Image, len: usize) -> impl Iterator<Item = Range<usize>> {
    let (stride, width) = (image.stride as usize, image.width as usize);
    (0..image.height as usize)
        .take_while(move |y| (y + 1) * stride <= len)
        .map(move |y| y * stride..y * stride + width.min(stride))
}

#[derive(Default)]
pub struct Grey;

impl ImageFilter for Grey {
    type Session = Stats;

    fn describe(&self) -> String {
        String::from("8-bit grey: invert, levels, row sums, sessions")
    }

    fn invert(&self, image: &Image, pixels: &mut [u8]) -> Result<(), PluginError> {
        check(image, pixels.len())?;
        for row in rows(image, pixels.len()) {
            pixels[row].iter_mut().for_each(|p| *p = 255 - *p);
        }
        Ok(())
    }

    fn adjust(&self, image: &Image, pixels: &mut [u8], levels: Levels) -> Result<(), PluginError> {
        check(image, pixels.len())?;
        for row in rows(image, pixels.len()) {
            for p in &mut pixels[row] {
                *p = (*p as f32 * levels.gain + levels.offset).clamp(0.0, 255.0) as u8;
            }
        }
        Ok(())
    }

    fn rows(&self, image: &Image, pixels: &[u8], visit: &dyn Fn(u32, u64) -> bool) -> u32 {
        let mut visited = 0;
        for row in rows(image, pixels.len()) {
            let sum = pixels[row].iter().map(|&p| p as u64).sum();
            if !visit(visited, sum) {
                break;
            }
            visited += 1;
        }
        visited
    }

    fn open(&self, label: &str) -> Option<Stats> {
        let label = String::from_utf8_lossy(&label.as_bytes()[..label.len().min(31)]).into_owned();
        Some(Stats { label, seen: Mutex::new(Seen::default()) })
    }

    fn feed(&self, session: &Stats, image: &Image, pixels: &[u8]) -> u64 {
        let mut seen = session.seen.lock().unwrap_or_else(|e| e.into_inner());
        for row in rows(image, pixels.len()) {
            seen.total += pixels[row.clone()].iter().map(|&p| p as u64).sum::<u64>();
            seen.pixels += row.len() as u64;
        }
        seen.pixels
    }

    fn report(&self, session: &Stats) -> String {
        let seen = session.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mean = if seen.pixels > 0 { seen.total / seen.pixels } else { 0 };
        format!("{}: {} pixels, mean {}", session.label, seen.pixels, mean)
    }

    fn end(&self, session: Stats) {
        drop(session); // the host calls this once per session
    }
}

plugin_impl!(ImageFilter, Grey, Grey);
plugin_aggregates!(ImageFilter; Grey);
