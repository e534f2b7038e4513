//! The store suite on redb and a real etcd, and the repository's integrity rules on both.
//! One test binary for the whole crate: each file below was its own binary, linked
//! separately against every dependency.

#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod common;

mod conformance;
mod repository;
