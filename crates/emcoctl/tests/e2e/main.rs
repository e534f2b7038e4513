//! The CLI as a black box against an in-process hub.
//! One test binary for the whole crate: each file below was its own binary, linked
//! separately against every dependency.

#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod cli;
mod status;
