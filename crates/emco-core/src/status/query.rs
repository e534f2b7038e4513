//! Parsing of the status query string, with upstream's validation and precedence rules.

use std::collections::HashMap;

/// Which status the query asks about. `type=` is upstream's deprecated spelling; its variants
/// render the legacy field names (`status`, `rsyncStatus`, `clusterStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    /// `status=deployed`: what EMCO applied to the clusters.
    Deployed,
    /// `status=ready`: what the clusters report back.
    Ready,
    /// `type=rsync` (also upstream's default when neither parameter is given).
    LegacyRsync,
    /// `type=cluster`.
    LegacyCluster,
}

impl StatusKind {
    /// Whether the legacy (`type=`) field names are used.
    pub fn is_legacy(self) -> bool {
        matches!(self, StatusKind::LegacyRsync | StatusKind::LegacyCluster)
    }

    /// Whether resource readiness (cluster-side observations) is reported.
    pub fn reports_readiness(self) -> bool {
        matches!(self, StatusKind::Ready | StatusKind::LegacyCluster)
    }
}

/// How much of the app/cluster/resource tree to include.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputLevel {
    /// Counts and group-level status only.
    Summary,
    /// Every resource, without its body (upstream's default).
    All,
    /// Every resource with its body under `detail`.
    Detail,
}

/// The list queries; upstream gives them precedence in this order over the status tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListQuery {
    /// `apps`: the apps of the selected context.
    Apps,
    /// `clusters`: the clusters of each app (filter `app`).
    Clusters,
    /// `resources`: the resources per app and cluster (filters `app`, `cluster`).
    Resources,
}

/// A parsed status query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusQuery {
    /// The app context to report on (`instance=`); `None` means the latest.
    pub instance: Option<String>,
    pub kind: StatusKind,
    pub output: OutputLevel,
    pub list: Option<ListQuery>,
    /// `app=` filters (repeatable).
    pub apps: Vec<String>,
    /// `cluster=` filters, each `provider+cluster` as upstream compares them.
    pub clusters: Vec<String>,
    /// `resource=` filters by resource name (repeatable).
    pub resources: Vec<String>,
}

/// Why a status query cannot be answered. Upstream answers all of these with 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusQueryError {
    #[error("invalid query parameter `{parameter}`: {reason}")]
    InvalidParameter {
        parameter: &'static str,
        reason: String,
    },
    #[error("filter app {app} not in list of apps for composite app {composite_app}")]
    UnknownApp { app: String, composite_app: String },
    #[error("no state information for instance {0}")]
    UnknownInstance(String),
}

fn invalid(parameter: &'static str, reason: impl Into<String>) -> StatusQueryError {
    StatusQueryError::InvalidParameter {
        parameter,
        reason: reason.into(),
    }
}

/// Upstream's `validation.IsValidName`: a Kubernetes label value that is not empty.
fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let alnum = |b: &u8| b.is_ascii_alphanumeric();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl StatusQuery {
    /// Parses decoded query parameters (a key given without `=`, like `?apps`, maps to `[""]`).
    /// As upstream: only the first value of single-valued parameters counts, `status=` overrides
    /// `type=` (but a bad `type=` is still refused), and parameters a list query does not use
    /// are ignored.
    pub fn parse(params: &HashMap<String, Vec<String>>) -> Result<StatusQuery, StatusQueryError> {
        let first = |key: &str| {
            params
                .get(key)
                .map(|v| v.first().map_or("", String::as_str))
        };

        let instance = match first("instance") {
            Some("") => return Err(invalid("instance", "must not be empty")),
            Some(id) => Some(id.to_owned()),
            None => None,
        };

        let mut kind = match first("type") {
            None | Some("rsync") => StatusKind::LegacyRsync,
            Some("cluster") => StatusKind::LegacyCluster,
            Some(other) => {
                return Err(invalid(
                    "type",
                    format!("`{other}` is not one of rsync, cluster"),
                ));
            }
        };
        match first("status") {
            None => {}
            Some("deployed") => kind = StatusKind::Deployed,
            Some("ready") => kind = StatusKind::Ready,
            Some(other) => {
                return Err(invalid(
                    "status",
                    format!("`{other}` is not one of deployed, ready"),
                ));
            }
        }

        let output = match first("output") {
            None | Some("all") => OutputLevel::All,
            Some("summary") => OutputLevel::Summary,
            Some("detail") => OutputLevel::Detail,
            Some(other) => {
                return Err(invalid(
                    "output",
                    format!("`{other}` is not one of summary, all, detail"),
                ));
            }
        };

        let list = if params.contains_key("apps") {
            Some(ListQuery::Apps)
        } else if params.contains_key("clusters") {
            Some(ListQuery::Clusters)
        } else if params.contains_key("resources") {
            Some(ListQuery::Resources)
        } else {
            None
        };

        let names = |parameter: &'static str| -> Result<Vec<String>, StatusQueryError> {
            let values = params.get(parameter).cloned().unwrap_or_default();
            match values.iter().find(|v| !is_valid_name(v)) {
                Some(bad) => Err(invalid(parameter, format!("`{bad}` is not a valid name"))),
                None => Ok(values),
            }
        };
        let apps = names("app")?;
        let resources = names("resource")?;
        let clusters = params.get("cluster").cloned().unwrap_or_default();
        for cluster in &clusters {
            let parts: Vec<&str> = cluster.split('+').collect();
            if parts.len() != 2 || !parts.iter().all(|p| is_valid_name(p)) {
                return Err(invalid(
                    "cluster",
                    format!("`{cluster}` is not `<cluster provider>+<cluster>`"),
                ));
            }
        }

        Ok(StatusQuery {
            instance,
            kind,
            output,
            list,
            apps,
            clusters,
            resources,
        })
    }
}
