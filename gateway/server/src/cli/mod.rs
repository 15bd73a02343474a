//! Subcommands of `mimi`.

pub(crate) mod content;
pub(crate) mod input;
pub(crate) mod inspect;
