//! The command line's subcommands: each file holds a group's arguments and the handlers that
//! parse them into library calls. Part of the binary, not the library.

mod data;
mod events;
mod pipeline;
mod spot;
mod tools;
mod train;

pub(crate) use crate::interrupt_flag;
pub(crate) use data::*;
pub(crate) use events::*;
pub(crate) use pipeline::*;
pub(crate) use spot::*;
pub(crate) use tools::*;
pub(crate) use train::*;

/// `--fps`: a number inside the frame rates the camera path accepts.
pub(crate) fn parse_fps(v: &str) -> Result<f64, String> {
    let range = aullm::stream::camera::FPS_RANGE;
    let f: f64 = v
        .parse()
        .map_err(|e| format!("{v:?} is not a number: {e}"))?;
    if range.contains(&f) {
        Ok(f)
    } else {
        Err(format!(
            "{f} fps is outside {}..={} fps",
            range.start(),
            range.end()
        ))
    }
}

/// The exit codes every command uses (README "Failure behaviour").
pub(crate) mod exit {
    /// The command ran, but its input was not whole (a truncated or corrupt file, a source error
    /// mid-stream) or a check it made failed: what could be read was processed and written.
    pub(crate) const INCOMPLETE: u8 = 1;
    /// Nothing, or not everything, could be done: arguments, configuration, model or input
    /// refused before processing; `batch` with failed videos.
    pub(crate) const ERROR: u8 = 2;
    /// A recorded input or a batch stopped by SIGINT, SIGTERM or SIGHUP: queues drained, outputs
    /// and summary written, what was not read marked as such.
    pub(crate) const INTERRUPTED: u8 = 130;
    /// A second signal: quit at once, without draining.
    pub(crate) const QUIT: u8 = 131;
}
