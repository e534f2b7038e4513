//! Helm-related support for EMCO-rs: safe reading of uploaded chart and profile archives, and
//! rendering them with the real Helm into ordered, classified Kubernetes objects.

pub mod archive;
pub mod hooks;
pub mod manifest;
pub mod order;
pub mod release;
pub mod render;
pub mod scope;

pub use hooks::{HookDeletePolicy, HookEvent, HookSpec};
pub use release::{Hook, ManifestError, Release, RenderedObject};
pub use render::{
    HelmConfig, HelmRenderer, RenderError, RenderRequest, Renderer, find_helm,
    override_values_for_app,
};
