//! emcoctl: the EMCO command line client, compatible with upstream emcoctl's config, resource files, values
//! files and flags.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod client;
pub mod commands;
pub mod config;
pub mod resource;
pub mod routing;
pub mod status;
pub mod template;
