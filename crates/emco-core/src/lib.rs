//! The pure core of EMCO-rs: resource identity, the referential-integrity schema, the REST kind
//! table and body validation. Nothing here does I/O.

pub mod appcontext;
pub mod cloud;
pub mod gitops;
pub mod key;
pub mod kinds;
pub mod lifecycle;
pub mod placement;
pub mod refschema;
pub mod status;
pub mod validate;
