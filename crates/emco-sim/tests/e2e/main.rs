//! End-to-end tests of the simulator: real kubectl, kube-rs, Git and HTTP clients against it.
//! One test binary for the whole crate: each file below was its own binary, linked
//! separately against every dependency.

#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod common;

mod api;
mod argocd;
mod configsync;
mod control;
mod faults;
mod gitops;
mod kube_rs;
mod kubectl;
mod tls;
mod workloads;
