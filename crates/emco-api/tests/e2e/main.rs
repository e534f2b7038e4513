//! End-to-end tests of the REST API over HTTP: bad input, referential integrity, sync objects.
//! One test binary for the whole crate: each file below was its own binary, linked
//! separately against every dependency.

#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod common;

mod bad_input;
mod integrity;
mod sync_objects;
