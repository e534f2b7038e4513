//! Strategic merge patch against kubectl patch --local, on examples and generated inputs.
//! One test binary for the whole crate: each file below was its own binary, linked
//! separately against every dependency.

#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod common;

mod kubectl_oracle;
mod kubectl_proptest;
