//! GitOps clusters, as pure rules: what a cluster's `spec.gitOps` and its cluster sync objects
//! say, where each deployed object goes in the cluster's Git repository (upstream's layout), and
//! the objects each GitOps agent needs to pick a deployment up (Flux's `Kustomization`, Argo CD's
//! `Application`, Anthos' `deployed` marker and a level-1 cloud's `RepoSync`). No I/O: the synchronizer's Git target writes what
//! this module computes.

use serde_json::{Value, json};

use crate::appcontext::CloudScope;

/// Which agent pulls a cluster's repository (`spec.gitOps.gitOpsType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitOpsType {
    /// Flux v2 (`fluxcd`).
    Flux,
    /// Argo CD (`argocd`; upstream names it in its design only).
    ArgoCd,
    /// Azure Arc's Flux configuration, made through Azure's REST API (`azureArcV2`).
    AzureArc,
    /// Anthos Config Management (`anthos`).
    Anthos,
}

impl GitOpsType {
    /// The type a cluster's `spec.gitOps.gitOpsType` names; `None` for an empty or unknown one.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "fluxcd" => Some(Self::Flux),
            "argocd" => Some(Self::ArgoCd),
            "azureArcV2" => Some(Self::AzureArc),
            "anthos" => Some(Self::Anthos),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Flux => "fluxcd",
            Self::ArgoCd => "argocd",
            Self::AzureArc => "azureArcV2",
            Self::Anthos => "anthos",
        }
    }
}

/// A cluster's `spec.gitOps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterGitOps {
    pub kind: GitOpsType,
    /// The cluster sync object with the Git coordinates and credentials.
    pub reference_object: String,
    /// The cluster sync object with the agent's settings (intervals; Azure's ids).
    pub resource_object: String,
}

/// Why a GitOps setting cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitOpsError {
    #[error("spec.gitOps.gitOpsType {0:?} is not one of fluxcd, argocd, azureArcV2, anthos")]
    UnknownType(String),
    #[error("spec.gitOps.{0} is missing")]
    MissingReference(&'static str),
    #[error("cluster sync object {object}: kv {key} is missing")]
    MissingKey { object: String, key: &'static str },
    #[error("cluster sync object {object}: kv {key} {value:?} is not a whole number of seconds")]
    BadNumber {
        object: String,
        key: &'static str,
        value: String,
    },
}

impl ClusterGitOps {
    /// The GitOps settings of a cluster document; `Ok(None)` for a cluster reached through its
    /// kubeconfig (no `spec.gitOps`, or an empty type).
    pub fn of_cluster(cluster: &Value) -> Result<Option<Self>, GitOpsError> {
        let Some(git_ops) = cluster.pointer("/spec/gitOps") else {
            return Ok(None);
        };
        let text = |key: &str| git_ops.get(key).and_then(Value::as_str).unwrap_or("");
        let type_name = text("gitOpsType");
        if type_name.is_empty() {
            return Ok(None);
        }
        let kind = GitOpsType::parse(type_name)
            .ok_or_else(|| GitOpsError::UnknownType(type_name.to_owned()))?;
        let reference_object = text("gitOpsReferenceObject");
        if reference_object.is_empty() {
            return Err(GitOpsError::MissingReference("gitOpsReferenceObject"));
        }
        // Upstream's examples pass the same object as both for Anthos.
        let resource_object = match text("gitOpsResourceObject") {
            "" => reference_object,
            other => other,
        };
        Ok(Some(Self {
            kind,
            reference_object: reference_object.to_owned(),
            resource_object: resource_object.to_owned(),
        }))
    }
}

/// The kv pairs of a cluster sync object body (`spec.kv`: one-key maps of strings, as upstream;
/// a map with several keys gives each of them). Non-string values are taken as their JSON text.
pub fn kv_pairs(sync_object: &Value) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for item in sync_object
        .pointer("/spec/kv")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for (key, value) in item.as_object().into_iter().flatten() {
            let value = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            pairs.push((key.clone(), value));
        }
    }
    pairs
}

fn lookup<'a>(kv: &'a [(String, String)], key: &str) -> Option<&'a str> {
    kv.iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.as_str())
        .filter(|value| !value.is_empty())
}

/// Where and as whom the hub writes a cluster's repository (the reference sync object).
#[derive(Clone, PartialEq, Eq)]
pub struct GitSettings {
    pub user_name: String,
    pub token: String,
    pub repo_name: String,
    pub url: String,
    pub branch: String,
}

impl std::fmt::Debug for GitSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("GitSettings")
            .field("user_name", &self.user_name)
            .field("repo_name", &self.repo_name)
            .field("url", &self.url)
            .field("branch", &self.branch)
            .finish_non_exhaustive()
    }
}

impl GitSettings {
    /// From the reference object's kv pairs; upstream needs `userName`, `gitToken`, `repoName`,
    /// `branch` and `url` (`gitType: github` chose GitHub's REST API there; any Git server works
    /// here, GitHub's included, so it is ignored).
    pub fn from_kv(object: &str, kv: &[(String, String)]) -> Result<Self, GitOpsError> {
        let need = |key: &'static str| {
            lookup(kv, key)
                .map(str::to_owned)
                .ok_or_else(|| GitOpsError::MissingKey {
                    object: object.to_owned(),
                    key,
                })
        };
        Ok(Self {
            user_name: need("userName")?,
            token: need("gitToken")?,
            repo_name: need("repoName")?,
            url: need("url")?,
            branch: need("branch")?,
        })
    }
}

/// The agent's timing (the resource sync object's `timeOut`, `syncInterval`, `retryInterval`,
/// in seconds; 60 each when absent, as upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncTimes {
    pub timeout_s: u64,
    pub sync_interval_s: u64,
    pub retry_interval_s: u64,
}

impl Default for SyncTimes {
    fn default() -> Self {
        Self {
            timeout_s: 60,
            sync_interval_s: 60,
            retry_interval_s: 60,
        }
    }
}

impl SyncTimes {
    pub fn from_kv(object: &str, kv: &[(String, String)]) -> Result<Self, GitOpsError> {
        let number = |key: &'static str| -> Result<u64, GitOpsError> {
            match lookup(kv, key) {
                None => Ok(60),
                Some(text) => text.trim().parse().map_err(|_| GitOpsError::BadNumber {
                    object: object.to_owned(),
                    key,
                    value: text.to_owned(),
                }),
            }
        };
        Ok(Self {
            timeout_s: number("timeOut")?,
            sync_interval_s: number("syncInterval")?,
            retry_interval_s: number("retryInterval")?,
        })
    }
}

/// A duration as Go's `time.Duration` prints it (what Flux's objects carry): `1m0s`, `30s`.
pub fn go_duration(seconds: u64) -> String {
    let (hours, minutes, secs) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match (hours, minutes) {
        (0, 0) => format!("{secs}s"),
        (0, _) => format!("{minutes}m{secs}s"),
        _ => format!("{hours}h{minutes}m{secs}s"),
    }
}

/// Where the hub keeps the last report of a cluster's agent (`emco agent`):
/// `{"objects": [...], "reportedMs": n}`, the objects EMCO deployed there as the cluster has them.
pub fn report_key(provider: &str, cluster: &str) -> String {
    format!("rsync/agent/{provider}/{cluster}")
}

/// The cluster's folder: `clusters/{provider}+{cluster}`.
pub fn cluster_dir(provider: &str, cluster: &str) -> String {
    format!("clusters/{provider}+{cluster}")
}

/// A deployment's folder for the cluster's root agent:
/// `clusters/{provider}+{cluster}/context/{context}`.
pub fn context_dir(provider: &str, cluster: &str, context: &str) -> String {
    format!("{}/context/{context}", cluster_dir(provider, cluster))
}

/// A level-1 logical cloud's folder on a cluster (Anthos): `namespaces/{namespace}/{provider}+{cluster}`,
/// what the cloud's `RepoSync` syncs into the namespace.
pub fn namespace_dir(namespace: &str, provider: &str, cluster: &str) -> String {
    format!("namespaces/{namespace}/{provider}+{cluster}")
}

/// The deployment (context) a repository path belongs to, in either layout:
/// `clusters/{p}+{c}/context/{ctx}/…` or `namespaces/{ns}/{p}+{c}/context/{ctx}/…`.
pub fn context_of_path<'a>(provider: &str, cluster: &str, path: &'a str) -> Option<&'a str> {
    let folder = format!("{provider}+{cluster}");
    let rest = match path.split_once('/')? {
        ("clusters", rest) => rest,
        ("namespaces", rest) => rest.split_once('/')?.1,
        _ => return None,
    };
    let rest = rest
        .strip_prefix(folder.as_str())?
        .strip_prefix("/context/")?;
    let (context, _) = rest.split_once('/')?;
    (!context.is_empty()).then_some(context)
}

/// Where an object goes inside a deployment folder: `{dir}/app/{app}/{name}+{kind}.yaml`
/// (upstream's names; the content is JSON, which is YAML), or `{name}+{kind}+{namespace}.yaml`.
fn object_file(
    dir: &str,
    app: &str,
    name: &str,
    kind: &str,
    namespace_suffix: Option<&str>,
) -> String {
    match namespace_suffix {
        Some(namespace) => format!("{dir}/app/{app}/{name}+{kind}+{namespace}.yaml"),
        None => format!("{dir}/app/{app}/{name}+{kind}.yaml"),
    }
}

/// Whether `path` is a plain relative path inside a repository: no absolute path, no empty,
/// `.` or `..` component, nothing under `.git`, no quote, backslash or control character
/// (which `git fast-import` would read as syntax). Kubernetes names never need any of these.
pub fn plain_repo_path(path: &str) -> Result<(), String> {
    let bad_component = path
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..");
    let bad_char = path
        .chars()
        .any(|c| c.is_control() || c == '"' || c == '\\');
    if bad_component || bad_char || path.starts_with(".git") {
        return Err(format!(
            "refusing to write {path:?}: not a plain relative path"
        ));
    }
    Ok(())
}

/// The deployment a labelled object belongs to: `emco/deployment-id` is `{context}-{app}`
/// (context ids are hex, without `-`).
pub fn split_deployment_id(label: &str) -> Option<(&str, &str)> {
    let (context, app) = label.split_once('-')?;
    (!context.is_empty() && !app.is_empty()).then_some((context, app))
}

/// Files a cluster's folder keeps for good, whatever is deployed: Config Sync (a RootSync) and
/// Argo CD (an app of apps) fail on a folder that does not exist instead of pruning, so such a
/// cluster's folder must outlive its last deployment (upstream never removes its Anthos
/// `deployed` markers, to the same effect). Not a manifest: both ignore it. Flux's folder holds
/// `flux bootstrap`'s own files; Azure's configurations are per deployment.
pub fn cluster_files(kind: GitOpsType, provider: &str, cluster: &str) -> Vec<(String, Value)> {
    match kind {
        GitOpsType::Anthos | GitOpsType::ArgoCd => vec![(
            format!("{}/managed-by-emco", cluster_dir(provider, cluster)),
            json!({"provider": provider, "cluster": cluster, "gitOpsType": kind.name()}),
        )],
        _ => Vec::new(),
    }
}

/// The name of a level-1 cloud's Config Sync `RepoSync` (upstream's).
pub fn repo_sync_name(logical_cloud: &str) -> String {
    format!("repo-sync-{logical_cloud}")
}

/// The Secret a cloud's `RepoSync` reads the repository's credentials from, in the cloud's
/// namespace. Credentials never go into Git: the cluster's administrator puts it there (keys
/// `username` and `token`), as Config Sync documents for a namespace repository.
pub const REPO_SYNC_SECRET: &str = "git-creds";

/// One deployment (an app context) on one GitOps cluster: where its files go and what the
/// cluster's agent needs to pick it up.
#[derive(Debug, Clone, Copy)]
pub struct Deployment<'a> {
    pub kind: GitOpsType,
    pub provider: &'a str,
    pub cluster: &'a str,
    pub context: &'a str,
    /// The level-1 logical cloud the context deploys into or instantiates.
    pub cloud: Option<&'a CloudScope>,
    /// The namespace of the group's apps, when the context records it.
    pub namespace: Option<&'a str>,
}

impl Deployment<'_> {
    /// Anthos apps of a level-1 cloud live under the cloud's namespace folder, which only the
    /// cloud's `RepoSync` (limited to that namespace) syncs, as upstream; all else under the
    /// cluster's folder.
    fn namespaced(&self) -> Option<&str> {
        match (self.kind, self.cloud) {
            (GitOpsType::Anthos, Some(cloud)) if !cloud.instantiates_cloud => {
                Some(cloud.namespace.as_str())
            }
            _ => None,
        }
    }

    /// The deployment's folder: `clusters/{p}+{c}/context/{context}`, or for Anthos apps in a
    /// level-1 cloud `namespaces/{ns}/{p}+{c}/context/{context}`.
    pub fn dir(&self) -> String {
        match self.namespaced() {
            Some(namespace) => format!(
                "{}/context/{}",
                namespace_dir(namespace, self.provider, self.cluster),
                self.context
            ),
            None => context_dir(self.provider, self.cluster, self.context),
        }
    }

    /// Where one of its objects goes: `{dir}/app/{app}/{name}+{kind}.yaml` (upstream's name),
    /// or `{name}+{kind}+{namespace}.yaml` for an object in a namespace other than the group's,
    /// so that objects of one name and kind in several namespaces never share a file.
    pub fn object_path(
        &self,
        app: &str,
        name: &str,
        kind: &str,
        object_namespace: Option<&str>,
    ) -> String {
        object_file(
            &self.dir(),
            app,
            name,
            kind,
            self.namespace_suffix(object_namespace),
        )
    }

    /// The namespace an object's file name carries (see [`Deployment::object_path`]).
    pub fn namespace_suffix<'n>(&self, object_namespace: Option<&'n str>) -> Option<&'n str> {
        match (object_namespace, self.namespace) {
            (Some(object), Some(group)) if object != group => Some(object),
            _ => None,
        }
    }

    /// What the agent needs, in Git, to pick the deployment up: files (path, content) beside
    /// its `app` folder. Written with the deployment's first file, removed with its last.
    pub fn agent_files(&self, git: &GitSettings, times: &SyncTimes) -> Vec<(String, Value)> {
        let (provider, cluster, context) = (self.provider, self.cluster, self.context);
        let dir = cluster_dir(provider, cluster);
        let path = self.dir();
        match self.kind {
            // As upstream: a GitRepository `{context}` and a Kustomization `kust{context}` of the
            // deployment's folder. Both live in `flux-system` so the source can use the credentials
            // `flux bootstrap` left there (Secret `flux-system`): credentials never go into Git.
            GitOpsType::Flux => vec![
                (
                    format!("{dir}/{context}.yaml"),
                    json!({
                        "apiVersion": "source.toolkit.fluxcd.io/v1beta2",
                        "kind": "GitRepository",
                        "metadata": {"name": context, "namespace": "flux-system"},
                        "spec": {
                            "interval": go_duration(times.sync_interval_s),
                            "ref": {"branch": git.branch},
                            "url": git.url,
                            "secretRef": {"name": "flux-system"},
                        },
                    }),
                ),
                (
                    format!("{dir}/kust{context}.yaml"),
                    json!({
                        "apiVersion": "kustomize.toolkit.fluxcd.io/v1beta2",
                        "kind": "Kustomization",
                        "metadata": {"name": format!("kust{context}"), "namespace": "flux-system"},
                        "spec": {
                            "interval": go_duration(times.sync_interval_s),
                            "retryInterval": go_duration(times.retry_interval_s),
                            "timeout": go_duration(times.timeout_s),
                            "path": path,
                            "prune": true,
                            "sourceRef": {"kind": "GitRepository", "name": context},
                        },
                    }),
                ),
            ],
            GitOpsType::ArgoCd => vec![(
                format!("{dir}/app{context}.yaml"),
                json!({
                    "apiVersion": "argoproj.io/v1alpha1",
                    "kind": "Application",
                    "metadata": {
                        "name": format!("emco-{context}"),
                        "namespace": "argocd",
                        "finalizers": ["resources-finalizer.argocd.argoproj.io"],
                    },
                    "spec": {
                        "project": "default",
                        "source": {
                            "repoURL": git.url,
                            "targetRevision": git.branch,
                            "path": path,
                            "directory": {"recurse": true},
                        },
                        "destination": {"server": "https://kubernetes.default.svc"},
                        "syncPolicy": {
                            "automated": {"prune": true, "selfHeal": true},
                            // No limit is no retry to Argo CD; EMCO retries until it works.
                            "retry": {
                                "limit": -1,
                                "backoff": {"duration": go_duration(times.retry_interval_s)},
                            },
                        },
                    },
                }),
            )],
            // Config Sync's RootSync (set up with the cluster, at `clusters/{p}+{c}`) applies the
            // cluster's folder; upstream marks each deployment with a `deployed` file (not a
            // manifest: Config Sync reads only `.yaml`, `.yml` and `.json` files). A level-1
            // cloud's own context also gets the cloud's RepoSync, which syncs the cloud's
            // namespace folder into its namespace.
            GitOpsType::Anthos => {
                let mut files = vec![(format!("{path}/deployed"), json!({"context": context}))];
                if let Some(cloud) = self.cloud.filter(|cloud| cloud.instantiates_cloud) {
                    let name = repo_sync_name(&cloud.logical_cloud);
                    let synced = namespace_dir(&cloud.namespace, provider, cluster);
                    // The RepoSync's folder exists as long as the cloud, so that when the last
                    // group in the cloud leaves, Config Sync prunes its objects instead of
                    // failing on a missing folder (not a manifest: Config Sync ignores it).
                    files.push((
                        format!("{synced}/logical-cloud"),
                        json!({"logicalCloud": cloud.logical_cloud, "namespace": cloud.namespace,
                            "context": context}),
                    ));
                    files.push((
                        format!("{path}/{name}+RepoSync.json"),
                        json!({
                            "apiVersion": "configsync.gke.io/v1beta1",
                            "kind": "RepoSync",
                            "metadata": {"name": name, "namespace": cloud.namespace},
                            "spec": {
                                "git": {
                                    "repo": git.url,
                                    "revision": "HEAD",
                                    "branch": git.branch,
                                    "dir": format!("/{synced}"),
                                    "auth": "token",
                                    "secretRef": {"name": REPO_SYNC_SECRET},
                                    "noSSLVerify": false,
                                },
                            },
                        }),
                    ));
                }
                files
            }
            // Azure keeps the Flux configuration (made through its REST API), not Git.
            GitOpsType::AzureArc => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn cluster_gitops_settings_are_read_as_upstream_writes_them() {
        let flux = json!({"metadata": {"name": "c2"}, "spec": {"gitOps": {
            "gitOpsType": "fluxcd", "gitOpsReferenceObject": "repo", "gitOpsResourceObject": "res"}}});
        let settings = ClusterGitOps::of_cluster(&flux).unwrap().unwrap();
        assert_eq!(settings.kind, GitOpsType::Flux);
        assert_eq!(settings.resource_object, "res");
        let plain = json!({"metadata": {"name": "c1"}, "spec": {"gitOps": {"gitOpsType": ""}}});
        assert_eq!(ClusterGitOps::of_cluster(&plain).unwrap(), None);
        assert_eq!(ClusterGitOps::of_cluster(&json!({})).unwrap(), None);
        let unknown =
            json!({"spec": {"gitOps": {"gitOpsType": "fluxv2", "gitOpsReferenceObject": "r"}}});
        assert!(
            ClusterGitOps::of_cluster(&unknown)
                .unwrap_err()
                .to_string()
                .contains("fluxv2")
        );
        let anthos =
            json!({"spec": {"gitOps": {"gitOpsType": "anthos", "gitOpsReferenceObject": "g"}}});
        assert_eq!(
            ClusterGitOps::of_cluster(&anthos)
                .unwrap()
                .unwrap()
                .resource_object,
            "g"
        );
    }

    #[test]
    fn sync_objects_give_git_settings_and_times_naming_what_is_missing() {
        let body = json!({"spec": {"kv": [{"userName": "u"}, {"gitToken": "t"}, {"repoName": "r"},
            {"branch": "main"}, {"url": "http://git/r.git"}]}});
        let git = GitSettings::from_kv("repo", &kv_pairs(&body)).unwrap();
        assert_eq!(git.branch, "main");
        assert!(!format!("{git:?}").contains("\"t\""));
        let error = GitSettings::from_kv("repo", &kv(&[("userName", "u")])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cluster sync object repo: kv gitToken is missing"
        );
        let times = SyncTimes::from_kv("res", &kv(&[("syncInterval", "5")])).unwrap();
        assert_eq!((times.sync_interval_s, times.timeout_s), (5, 60));
        assert!(SyncTimes::from_kv("res", &kv(&[("timeOut", "soon")])).is_err());
    }

    #[test]
    fn only_plain_relative_paths_are_written() {
        assert!(
            plain_repo_path("clusters/p+c/context/ab/app/web/system:web+ClusterRole.yaml").is_ok()
        );
        for bad in [
            "/etc/passwd",
            "clusters/../../x",
            "clusters//x",
            "clusters/./x",
            ".git/config",
            "clusters/a\"b",
            "clusters/a\\b",
            "clusters/a\nM 100644 inline x",
        ] {
            assert!(plain_repo_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths_and_durations_follow_upstream() {
        let flux = deployment(GitOpsType::Flux, None);
        assert_eq!(
            flux.object_path("web", "web", "Deployment", Some("default")),
            "clusters/p+c/context/ab/app/web/web+Deployment.yaml"
        );
        assert_eq!(
            flux.object_path("web", "web-role", "ClusterRole", None),
            "clusters/p+c/context/ab/app/web/web-role+ClusterRole.yaml"
        );
        // Outside the group's namespace the file names the namespace: no two objects share one.
        assert_eq!(
            flux.object_path("web", "web", "ConfigMap", Some("kube-system")),
            "clusters/p+c/context/ab/app/web/web+ConfigMap+kube-system.yaml"
        );
        // A context that does not record its namespace keeps upstream's names.
        let legacy = Deployment {
            namespace: None,
            ..flux
        };
        assert_eq!(
            legacy.object_path("web", "web", "ConfigMap", Some("kube-system")),
            "clusters/p+c/context/ab/app/web/web+ConfigMap.yaml"
        );
        assert_eq!(go_duration(60), "1m0s");
        assert_eq!(go_duration(30), "30s");
        assert_eq!(go_duration(3725), "1h2m5s");
        assert_eq!(split_deployment_id("0a1b-my-app"), Some(("0a1b", "my-app")));
        assert_eq!(split_deployment_id("nodash"), None);
    }

    fn deployment(kind: GitOpsType, cloud: Option<&CloudScope>) -> Deployment<'_> {
        Deployment {
            kind,
            provider: "p",
            cluster: "c",
            context: "ab",
            cloud,
            namespace: Some("default"),
        }
    }

    fn git() -> GitSettings {
        GitSettings {
            user_name: "u".into(),
            token: "t".into(),
            repo_name: "r".into(),
            url: "http://git/r.git".into(),
            branch: "main".into(),
        }
    }

    #[test]
    fn anthos_syncs_a_level_one_cloud_through_its_repo_sync() {
        let cloud = CloudScope {
            logical_cloud: "lc1".into(),
            namespace: "privileged-lc-ns".into(),
            instantiates_cloud: true,
        };
        let times = SyncTimes::default();
        // The cloud's own context: under the cluster's folder, with the RepoSync beside it.
        let instantiate = deployment(GitOpsType::Anthos, Some(&cloud));
        assert_eq!(instantiate.dir(), "clusters/p+c/context/ab");
        let files = instantiate.agent_files(&git(), &times);
        assert_eq!(files[0].0, "clusters/p+c/context/ab/deployed");
        assert_eq!(files[1].0, "namespaces/privileged-lc-ns/p+c/logical-cloud");
        assert_eq!(
            files[2].0,
            "clusters/p+c/context/ab/repo-sync-lc1+RepoSync.json"
        );
        let repo_sync = &files[2].1;
        assert_eq!(repo_sync["kind"], "RepoSync");
        assert_eq!(repo_sync["apiVersion"], "configsync.gke.io/v1beta1");
        assert_eq!(repo_sync["metadata"]["name"], "repo-sync-lc1");
        assert_eq!(repo_sync["metadata"]["namespace"], "privileged-lc-ns");
        assert_eq!(
            repo_sync["spec"]["git"]["dir"],
            "/namespaces/privileged-lc-ns/p+c"
        );
        assert_eq!(repo_sync["spec"]["git"]["repo"], "http://git/r.git");
        assert_eq!(repo_sync["spec"]["git"]["branch"], "main");
        assert_eq!(
            repo_sync["spec"]["git"]["secretRef"]["name"],
            REPO_SYNC_SECRET
        );
        assert!(!repo_sync.to_string().contains("\"t\""), "no token in Git");
        // Apps deployed into the cloud: under its namespace folder, which the RepoSync syncs.
        let apps = CloudScope {
            instantiates_cloud: false,
            ..cloud.clone()
        };
        let deployed = deployment(GitOpsType::Anthos, Some(&apps));
        assert_eq!(
            deployed.object_path("web", "web", "Deployment", Some("default")),
            "namespaces/privileged-lc-ns/p+c/context/ab/app/web/web+Deployment.yaml"
        );
        let files = deployed.agent_files(&git(), &times);
        assert_eq!(files.len(), 1);
        assert_eq!(
            files[0].0,
            "namespaces/privileged-lc-ns/p+c/context/ab/deployed"
        );
        // Other agents keep one layout whatever the cloud.
        let flux = deployment(GitOpsType::Flux, Some(&apps));
        assert_eq!(flux.dir(), "clusters/p+c/context/ab");
        assert_eq!(flux.agent_files(&git(), &times).len(), 2);
        // Paths of either layout name their deployment.
        for path in [
            "clusters/p+c/context/ab/app/web/web+Deployment.yaml",
            "namespaces/privileged-lc-ns/p+c/context/ab/app/web/web+Deployment.yaml",
            "clusters/p+c/context/ab/deployed",
        ] {
            assert_eq!(context_of_path("p", "c", path), Some("ab"), "{path}");
        }
        for path in [
            "clusters/p+c/ab.yaml",
            "clusters/p+other/context/ab/deployed",
            "namespaces/ns/p+c/other/ab/x",
            "README.md",
        ] {
            assert_eq!(context_of_path("p", "c", path), None, "{path}");
        }
    }

    #[test]
    fn each_agent_gets_what_it_needs_beside_the_deployment() {
        let (git, times) = (git(), SyncTimes::default());
        let agent_files = |kind| deployment(kind, None).agent_files(&git, &times);
        let flux = agent_files(GitOpsType::Flux);
        assert_eq!(flux[0].0, "clusters/p+c/ab.yaml");
        assert_eq!(flux[0].1["spec"]["url"], "http://git/r.git");
        assert_eq!(flux[0].1["spec"]["secretRef"]["name"], "flux-system");
        assert_eq!(flux[1].0, "clusters/p+c/kustab.yaml");
        assert_eq!(flux[1].1["spec"]["path"], "clusters/p+c/context/ab");
        assert_eq!(flux[1].1["spec"]["prune"], true);
        assert_eq!(flux[1].1["spec"]["interval"], "1m0s");
        assert_eq!(flux[1].1["spec"]["sourceRef"]["name"], "ab");
        let argo = agent_files(GitOpsType::ArgoCd);
        assert_eq!(argo[0].1["spec"]["source"]["repoURL"], "http://git/r.git");
        assert_eq!(argo[0].1["spec"]["syncPolicy"]["automated"]["prune"], true);
        assert_eq!(argo[0].1["spec"]["syncPolicy"]["retry"]["limit"], -1);
        assert!(agent_files(GitOpsType::AzureArc).is_empty());
        let anthos = agent_files(GitOpsType::Anthos);
        assert_eq!(anthos[0].0, "clusters/p+c/context/ab/deployed");
        // Only the folders of Anthos and Argo CD clusters need to outlive their deployments.
        for kind in [GitOpsType::Anthos, GitOpsType::ArgoCd] {
            assert_eq!(
                cluster_files(kind, "p", "c")[0].0,
                "clusters/p+c/managed-by-emco"
            );
        }
        assert!(cluster_files(GitOpsType::Flux, "p", "c").is_empty());
        assert!(cluster_files(GitOpsType::AzureArc, "p", "c").is_empty());
    }
}
