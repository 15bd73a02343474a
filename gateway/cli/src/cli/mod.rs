//! Subcommands of `mimi`.

pub(crate) mod admin;
pub(crate) mod bench;
pub(crate) mod bridge;
pub(crate) mod client;
pub(crate) mod content;
pub(crate) mod demo;
pub(crate) mod init;
pub(crate) mod input;
pub(crate) mod inspect;
pub(crate) mod load;
pub(crate) mod run;
pub(crate) mod translate;
