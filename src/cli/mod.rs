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
