//! `aullmfilesrc`: a GStreamer file source that reads the file through a memory map.
//!
//! A batch reads each recorded video once, cold. GStreamer's `filesrc` pulls every demuxer chunk
//! with `read()`, and beside the JPEG decoder on both cores that path cost ~9% of a batch's CPU on
//! this machine; faulting the same pages in through a sequential map does not (the copy out of the
//! map costs the same as handing the map out directly, measured). Each buffer owns a copy of its
//! bytes: a file cut short while it is read can then only be touched inside `create`, right after
//! the size check, and downstream elements never hold pages that may vanish under them.

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer::subclass::prelude::*;
use gstreamer_base as gst_base;
use gstreamer_base::prelude::*;
use gstreamer_base::subclass::base_src::CreateSuccess;
use gstreamer_base::subclass::prelude::*;
use std::fs::File;
use std::sync::{Mutex, Once};

/// Name the element is registered under.
pub const ELEMENT_NAME: &str = "aullmfilesrc";

/// Mapped pages further than this behind the read position are unmapped, so the process's resident
/// size does not grow with the file (a later read of them just maps them again).
const RELEASE_BEHIND: u64 = 4 << 20;

/// Registers `aullmfilesrc` with GStreamer for this process (once; GStreamer must be initialised).
pub fn register() -> Result<(), glib::BoolError> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = gst::Element::register(
            None,
            ELEMENT_NAME,
            gst::Rank::NONE,
            MappedFileSrc::static_type(),
        );
    });
    result
}

/// The open file while the element runs.
struct Open {
    file: File,
    map: memmap2::Mmap,
    /// Everything below this offset has been released to the kernel.
    released: u64,
}

glib::wrapper! {
    /// The element object (see the module documentation).
    pub struct MappedFileSrc(ObjectSubclass<imp::MappedFileSrc>)
        @extends gst_base::BaseSrc, gst::Element, gst::Object;
}

mod imp {
    use super::*;

    /// Element state: the `location` property and, between start and stop, the mapped file.
    #[derive(Default)]
    pub struct MappedFileSrc {
        pub(super) location: Mutex<Option<String>>,
        pub(super) open: Mutex<Option<Open>>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for MappedFileSrc {
        const NAME: &'static str = "AullmMappedFileSrc";
        type Type = super::MappedFileSrc;
        type ParentType = gst_base::BaseSrc;
    }

    impl ObjectImpl for MappedFileSrc {
        fn properties() -> &'static [glib::ParamSpec] {
            static PROPS: std::sync::OnceLock<Vec<glib::ParamSpec>> = std::sync::OnceLock::new();
            PROPS.get_or_init(|| {
                vec![
                    glib::ParamSpecString::builder("location")
                        .nick("File Location")
                        .blurb("Path of the file to read")
                        .build(),
                ]
            })
        }

        fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
            if pspec.name() == "location" {
                *lock(&self.location) = value.get().ok().flatten();
            }
        }

        fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
            match pspec.name() {
                "location" => lock(&self.location).to_value(),
                _ => None::<String>.to_value(),
            }
        }

        fn constructed(&self) {
            self.parent_constructed();
            self.obj().set_format(gst::Format::Bytes);
        }
    }

    impl GstObjectImpl for MappedFileSrc {}

    impl ElementImpl for MappedFileSrc {
        fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
            static META: std::sync::OnceLock<gst::subclass::ElementMetadata> =
                std::sync::OnceLock::new();
            Some(META.get_or_init(|| {
                gst::subclass::ElementMetadata::new(
                    "Memory-mapped file source",
                    "Source/File",
                    "Reads a file through a memory map, without copying its bytes",
                    "aullm",
                )
            }))
        }

        fn pad_templates() -> &'static [gst::PadTemplate] {
            static TEMPLATES: std::sync::OnceLock<Vec<gst::PadTemplate>> =
                std::sync::OnceLock::new();
            TEMPLATES.get_or_init(|| {
                vec![
                    gst::PadTemplate::new(
                        "src",
                        gst::PadDirection::Src,
                        gst::PadPresence::Always,
                        &gst::Caps::new_any(),
                    )
                    .expect("static pad template"),
                ]
            })
        }
    }

    impl BaseSrcImpl for MappedFileSrc {
        fn start(&self) -> Result<(), gst::ErrorMessage> {
            let Some(location) = lock(&self.location).clone() else {
                return Err(gst::error_msg!(
                    gst::ResourceError::NotFound,
                    ["no file given (the location property is empty)"]
                ));
            };
            let file = File::open(&location).map_err(|e| {
                gst::error_msg!(
                    gst::ResourceError::OpenRead,
                    ["cannot open {location}: {e}"]
                )
            })?;
            // SAFETY: the map is read-only and private, and it is read only in `create`, after
            // checking that the file still holds the bytes read.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| {
                gst::error_msg!(gst::ResourceError::OpenRead, ["cannot map {location}: {e}"])
            })?;
            // The demuxer reads front to back: ask for deep read-ahead.
            let _ = map.advise(memmap2::Advice::Sequential);
            *lock(&self.open) = Some(Open {
                file,
                map,
                released: 0,
            });
            Ok(())
        }

        fn stop(&self) -> Result<(), gst::ErrorMessage> {
            *lock(&self.open) = None;
            Ok(())
        }

        fn is_seekable(&self) -> bool {
            true
        }

        fn size(&self) -> Option<u64> {
            lock(&self.open).as_ref().map(|o| o.map.len() as u64)
        }

        fn create(
            &self,
            offset: u64,
            _buffer: Option<&mut gst::BufferRef>,
            length: u32,
        ) -> Result<CreateSuccess, gst::FlowError> {
            let mut guard = lock(&self.open);
            let open = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
            let size = open.map.len() as u64;
            if offset >= size {
                return Err(gst::FlowError::Eos);
            }
            let end = (offset + length as u64).min(size);
            // A file cut short under the map would raise SIGBUS on access: refuse instead.
            let now = open.file.metadata().map(|m| m.len()).unwrap_or(0);
            if now < end {
                let location = lock(&self.location).clone().unwrap_or_default();
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Read,
                    ["{location} shrank from {size} to {now} bytes while it was read"]
                );
                return Err(gst::FlowError::Error);
            }
            release_behind(open, offset);
            // The copy comes right after the size check: see the module documentation.
            let mut buffer =
                gst::Buffer::from_mut_slice(open.map[offset as usize..end as usize].to_vec());
            {
                let b = buffer.get_mut().ok_or(gst::FlowError::Error)?;
                b.set_offset(offset);
                b.set_offset_end(end);
            }
            Ok(CreateSuccess::NewBuffer(buffer))
        }
    }

    /// Returns the pages well behind `offset` to the kernel (see [`RELEASE_BEHIND`]).
    fn release_behind(open: &mut Open, offset: u64) {
        let page = 4096u64;
        let upto = offset.saturating_sub(RELEASE_BEHIND) / page * page;
        // The demuxer may jump back (an AVI's index sits at the end): count from there again.
        open.released = open.released.min(upto);
        if upto >= open.released + RELEASE_BEHIND {
            let from = open.released as usize;
            // SAFETY: the range lies inside the map, and no reference into it outlives `create`. On
            // a private read-only file map DONTNEED only drops page-table entries.
            let _ = unsafe {
                open.map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    from,
                    (upto - open.released) as usize,
                )
            };
            open.released = upto;
        }
    }
}

/// Locks a mutex, going on with the data if another thread panicked while holding it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
