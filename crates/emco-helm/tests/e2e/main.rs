//! Chart rendering with the real helm binary, tar handling, upstream's chart tarballs.
//! One test binary for the whole crate: each file below was its own binary, linked
//! separately against every dependency.

#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod render_helm;
mod system_tar;
mod upstream_tarballs;
