//! End-to-end tests of the real binaries: `emco serve`, `emco sim`, `emcoctl` and `kubectl` run
//! upstream's examples and their faults. One test binary: each file below was its own binary,
//! linked separately against every dependency. The conformance replay is its own binary.

#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod support;

mod cloud_examples;
mod controller_examples;
mod crash_safety;
mod deploy_examples;
mod deploy_faults;
mod emcoctl_examples;
mod gitops_examples;
mod update_examples;
