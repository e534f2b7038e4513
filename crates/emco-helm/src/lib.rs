//! Helm-related support for EMCO-rs: safe reading of uploaded chart and profile archives.

pub mod archive;
