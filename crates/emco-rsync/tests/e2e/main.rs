//! End-to-end tests of the resource synchronizer against the simulator, real Git and stand-in Azure.
//! One test binary for the whole crate: each file below was its own binary, linked
//! separately against every dependency.

#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod common;

mod azure_arc;
mod certificates;
mod discovery;
mod engine;
mod gitops;
mod scale;
mod sim;
mod tls;
mod update;
