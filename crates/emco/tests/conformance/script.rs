//! What each upstream pytest script does with its input, derived from the script's name.
//!
//! The 133 scripts the two lists use fall into a few shapes (read from the upstream sources):
//! `post*` sends `json.dumps(body)`; `*Neg422` hands the dict to `requests` as form data so the body
//! is not JSON; the cluster, app and app-profile posts are multipart (`metadata` + `file`); lifecycle
//! posts have no body; `get*`/`query*`/`status*` are GETs and `delete*` DELETEs of the anchor.

use anyhow::bail;

/// Value the controller scripts write into `spec.host` of both the request and the expected response
/// (upstream takes it from `HOST` in `configuration/.env*`; `.env.local` uses this address).
pub const CONTROLLER_HOST: &str = "127.0.0.1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// Where a multipart script finds the file it attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileSource {
    /// `$KUBECONFIG_PATH/<name>`: the replay attaches the kubeconfig of a simulated cluster
    /// named like the posted cluster instead.
    Kubeconfig,
    /// `tgz_files/<name>`: a Helm chart or profile archive from the corpus.
    Archive,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyEncoding {
    /// No body at all (GET, DELETE, lifecycle POSTs).
    Empty,
    /// `data=json.dumps(body)`.
    Json,
    /// `data=body` with a dict: `requests` form-encodes it (see `request::python_form_pairs`).
    PythonForm,
    /// `data={"metadata": json.dumps(body)}, files={"file": ...}`.
    Multipart(FileSource),
    /// `data={"metadata": body}, files={"file": ...}`: one `metadata` part per key of the dict.
    PythonFormMultipart(FileSource),
}

/// How a controller script rewrites `spec.host` before sending and comparing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostRewrite {
    None,
    RequestAndResponse,
    Response,
    ResponseList,
}

/// The assertion helper the script uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Status must match; a string ResponseText must be a substring of the body, a JSON one equal to it.
    Standard,
    /// `test_statusDeployment.py`: as Standard, except a string ResponseText with 200 is compared to
    /// the body's `status` field.
    DeploymentStatus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScriptBehaviour {
    pub method: Method,
    pub encoding: BodyEncoding,
    pub headers: &'static [(&'static str, &'static str)],
    pub host_rewrite: HostRewrite,
    pub check: Check,
}

const JSON_POST_HEADERS: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("accept", "application/json"),
];
const JSON_GET_HEADERS: &[(&str, &str)] = &[("accept", "application/json")];
const DELETE_HEADERS: &[(&str, &str)] = &[("accept", "*/*")];
const NO_HEADERS: &[(&str, &str)] = &[];

/// Posts whose input carries a `RequestBodyFile`, by script name without the `Neg422` suffix.
const MULTIPART_SCRIPTS: &[(&str, FileSource)] = &[
    ("test_postCluster", FileSource::Kubeconfig),
    ("test_postAppCompositeApps", FileSource::Archive),
    ("test_postAppProfileCompositeProfile", FileSource::Archive),
];

pub fn behaviour(script: &str) -> anyhow::Result<ScriptBehaviour> {
    let Some(name) = script.strip_suffix(".py") else {
        bail!("{script}: not a python script name");
    };
    let Some(action) = name.strip_prefix("test_") else {
        bail!("{script}: not a pytest script name");
    };
    let (base, negative_422) = match name.strip_suffix("Neg422") {
        Some(base) => (base, true),
        None => (name, false),
    };
    let host_rewrite = match name {
        "test_postControllers" | "test_postDtcControllers" | "test_postClmControllers" => {
            HostRewrite::RequestAndResponse
        }
        "test_getControllersByName" | "test_getClmControllersByName" => HostRewrite::Response,
        "test_getControllers" | "test_getClmControllers" => HostRewrite::ResponseList,
        _ => HostRewrite::None,
    };
    let multipart = MULTIPART_SCRIPTS
        .iter()
        .find(|(n, _)| *n == base)
        .map(|(_, source)| *source);

    let mut check = Check::Standard;
    let (method, encoding, headers) = if action.starts_with("post") {
        match (multipart, negative_422) {
            (Some(source), false) => (Method::Post, BodyEncoding::Multipart(source), NO_HEADERS),
            (Some(source), true) => (
                Method::Post,
                BodyEncoding::PythonFormMultipart(source),
                NO_HEADERS,
            ),
            (None, false) => (Method::Post, BodyEncoding::Json, JSON_POST_HEADERS),
            (None, true) => (Method::Post, BodyEncoding::PythonForm, JSON_POST_HEADERS),
        }
    } else if ["approve", "instantiate", "terminate"]
        .iter()
        .any(|verb| action.starts_with(verb))
    {
        (Method::Post, BodyEncoding::Empty, JSON_POST_HEADERS)
    } else if action.starts_with("status") {
        check = Check::DeploymentStatus;
        (Method::Get, BodyEncoding::Empty, JSON_POST_HEADERS)
    } else if name == "test_getAppProfileCompositeProfiles" {
        // the only GET script that sets no accept header
        (Method::Get, BodyEncoding::Empty, NO_HEADERS)
    } else if action.starts_with("get") || action.starts_with("query") {
        (Method::Get, BodyEncoding::Empty, JSON_GET_HEADERS)
    } else if action.starts_with("delete") {
        (Method::Delete, BodyEncoding::Empty, DELETE_HEADERS)
    } else {
        bail!(
            "{script}: no replay rule for this kind of script (PUT scripts are not in the replayed lists)"
        );
    };
    Ok(ScriptBehaviour {
        method,
        encoding,
        headers,
        host_rewrite,
        check,
    })
}

/// The two data files upstream's executor (`deps.py`) inverts: the step passes only when the
/// script's own assertion fails, i.e. the hub refuses the premature lifecycle call.
pub fn is_inverted(input: &str) -> bool {
    matches!(
        input,
        "test_instantiateDeploymentBeforeApprove.json"
            | "test_terminateDeploymentBeforeInstantiate.json"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus;

    #[test]
    fn shapes_match_the_upstream_scripts() -> anyhow::Result<()> {
        let post = behaviour("test_postProjects.py")?;
        assert_eq!(
            (post.method, post.encoding),
            (Method::Post, BodyEncoding::Json)
        );
        let neg = behaviour("test_postProjectsNeg422.py")?;
        assert_eq!(neg.encoding, BodyEncoding::PythonForm);
        let cluster = behaviour("test_postClusterNeg422.py")?;
        assert_eq!(
            cluster.encoding,
            BodyEncoding::PythonFormMultipart(FileSource::Kubeconfig)
        );
        let app = behaviour("test_postAppCompositeApps.py")?;
        assert_eq!(app.encoding, BodyEncoding::Multipart(FileSource::Archive));
        let approve = behaviour("test_approveDeployment.py")?;
        assert_eq!(
            (approve.method, approve.encoding),
            (Method::Post, BodyEncoding::Empty)
        );
        assert_eq!(behaviour("test_queryIntentForApp.py")?.method, Method::Get);
        assert_eq!(
            behaviour("test_statusDeployment.py")?.check,
            Check::DeploymentStatus
        );
        assert_eq!(
            behaviour("test_deleteProjectsByName.py")?.method,
            Method::Delete
        );
        assert_eq!(
            behaviour("test_getClmControllers.py")?.host_rewrite,
            HostRewrite::ResponseList
        );
        assert!(behaviour("test_putProjects.py").is_err());
        Ok(())
    }

    #[test]
    fn every_replayed_script_has_a_rule_and_files_go_only_to_multipart_scripts()
    -> anyhow::Result<()> {
        let mut problems = Vec::new();
        for row in corpus::load_sequence()? {
            let shape = match behaviour(&row.script) {
                Ok(shape) => shape,
                Err(e) => {
                    problems.push(format!("{}: {e:#}", row.label()));
                    continue;
                }
            };
            let is_multipart = matches!(
                shape.encoding,
                BodyEncoding::Multipart(_) | BodyEncoding::PythonFormMultipart(_)
            );
            for case in corpus::load_input(&row)?.cases {
                if case.request_file.is_some() != is_multipart {
                    problems.push(format!(
                        "{}: RequestBodyFile present = {}",
                        row.label(),
                        !is_multipart
                    ));
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        Ok(())
    }
}
